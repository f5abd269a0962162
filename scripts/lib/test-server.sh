# shellcheck shell=bash
# Process management shared by scripts/*-test-server.sh; sourced, never run. Each script sets:
#   TS_NAME     its file name without .sh (message prefix, and the hint in `env`'s error)
#   TS_KIND     the server's kind for messages ("WebDAV", "SFTP", ...)
#   DIR         its state dir (absolute or relative); the lock is $DIR.lock
# and, for the default single-daemon pid_of/kill_recorded/cmd_stop/cmd_status below:
#   PID_FILE    where start_server records the daemon's PID
#   TS_EXE      glob the daemon's /proc/PID/exe base name must match (guards PID reuse)
#   TS_CMDLINE  optional fixed string its space-joined cmdline must contain ("" for none)
#   TS_DAEMON   the daemon's name in `status`
#   TS_STOPPED  what `stop` logs after stopping it
# It defines start_server (called with a fresh $DIR; writes $DIR/env) and, for the default
# cmd_status, status_detail (the lines after "<daemon> pid ..."). It may redefine any function
# here after sourcing (S3 runs three daemons), then ends with: ts_main "$@".
# The script sets these; shellcheck cannot see that from here.
# shellcheck disable=SC2154

log() { echo "$TS_NAME: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# recorded_pid FILE EXE_GLOB [CMDLINE]: the PID in FILE, if that process still runs EXE_GLOB (and
# its cmdline contains CMDLINE): guards PID reuse, and never matches another instance.
recorded_pid() {
  local pid exe
  [[ -r $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  # shellcheck disable=SC2053 # a glob on purpose (Azurite's exe is node, node20, ...)
  [[ ${exe##*/} == $2 ]] || return 1
  if [[ -n ${3:-} ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$3" || return 1
  fi
  echo "$pid"
}

# pid_of: the recorded PID of the script's daemon, if it still runs.
pid_of() { recorded_pid "$PID_FILE" "$TS_EXE" "${TS_CMDLINE:-}"; }

# spawned_alive PID_FILE: the process just started with `cmd &` still exists. Until the forked
# shell has exec'd the server its exe is bash, so pid_of would call it dead: alive is enough here.
spawned_alive() { [[ -e /proc/$(<"$1") ]]; }

running() { pid_of >/dev/null && [[ -r $DIR/env ]]; }

print_env() { cat "$DIR/env"; }

# wait_gone PID TENTHS: wait up to TENTHS/10 s for PID to exit.
wait_gone() {
  local i
  for ((i = 0; i < $2; i++)); do
    [[ -e /proc/$1 ]] || return 0
    # A zombie has exited; its parent (this shell, during a failed start) reaps it later.
    [[ $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) == Z ]] && return 0
    sleep 0.1
  done
  return 1
}

# stop_pids PID...: SIGTERM them all, wait for each to exit, SIGKILL one still there after 10 s.
stop_pids() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    wait_gone "$pid" 100 && continue
    log "SIGKILL to $pid: still running 10 s after SIGTERM"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 50 || die "$pid survived SIGKILL"
  done
}

# kill_recorded: stop the recorded daemon (only it); drop the PID file.
kill_recorded() {
  local pid
  if pid=$(pid_of); then
    stop_pids "$pid"
  fi
  rm -f "$PID_FILE"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# tails: the last lines of each non-empty log in $DIR/log, for a failed start.
tails() {
  local f
  for f in "$DIR"/log/*.log; do
    [[ -s $f ]] || continue
    echo "---- tail $f" >&2
    tail -n 25 "$f" >&2
  done
}

# arm_failed_start HINT: from here until `trap - EXIT`, a failing exit shows the logs, stops what
# was started and logs "start failed; HINT".
arm_failed_start() {
  TS_FAIL_HINT=$1
  trap 'on_failed_start $?' EXIT
}

on_failed_start() {
  if (($1 != 0)); then
    tails
    kill_recorded
    log "start failed; $TS_FAIL_HINT"
  fi
}

# rss_of PID: its resident set size, "N MB".
rss_of() { awk '/^VmRSS/ { print $2 / 1024 " MB" }' "/proc/$1/status"; }

cmd_start() {
  if running; then
    print_env
    return 0
  fi
  if [[ -e $DIR ]]; then
    log "removing stale state in $DIR"
    kill_recorded
    rm -rf "$DIR"
  fi
  start_server
  print_env
}

cmd_stop() {
  if ! pid_of >/dev/null; then
    rm -f "$PID_FILE"
    log "not running"
    return 0
  fi
  kill_recorded
  log "$TS_STOPPED"
}

cmd_status() {
  local pid rss
  if pid=$(pid_of) && [[ -r $DIR/env ]]; then
    rss=$(rss_of "$pid")
    echo "$TS_DAEMON pid $pid rss $rss"
    status_detail
    return 0
  fi
  echo "$TS_DAEMON not running"
  return 1
}

# ts_main ARG: take the lock and run the command.
ts_main() {
  # Serialise start/stop/status across concurrent callers; the lock file lives beside the state dir.
  mkdir -p "$(dirname "$DIR")"
  exec 9>"$DIR.lock"
  flock 9

  case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env)
    running || die "no $TS_KIND test server is running (state dir $DIR); run: scripts/$TS_NAME.sh start"
    print_env
    ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|env|status" >&2
    exit 2
    ;;
  esac
}
