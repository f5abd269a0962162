#!/usr/bin/env bash
# A local SFTP server (Debian's OpenSSH, `sshd` with internal-sftp) on 127.0.0.1 for walrust's tests.
#   scripts/sftp-test-server.sh start|stop|env|status
# Environment: WALRUST_SFTP_DIR (state, default ${TMPDIR:-/tmp}/walrust-sftp), WALRUST_SFTP_PORT
# (default 7482), WALRUST_SFTP_START_TIMEOUT (s, default 30).
set -euo pipefail

DIR=${WALRUST_SFTP_DIR:-${TMPDIR:-/tmp}/walrust-sftp}
# sshd wants absolute paths, and the URL's path is the served directory's real path.
[[ $DIR == /* ]] || DIR=$PWD/$DIR
PORT=${WALRUST_SFTP_PORT:-7482}
START_TIMEOUT=${WALRUST_SFTP_START_TIMEOUT:-30}
SSHD=/usr/sbin/sshd
# sshd only lets a non-root daemon log in as its own user; as root, the tests log in as root.
LOGIN=$(id -un)
CONFIG=$DIR/sshd_config
PID_FILE=$DIR/server.pid

log() { echo "sftp-test-server: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# pid_of: the recorded PID, if the process still runs sshd with our config (guards PID reuse and
# never matches the system's own sshd).
pid_of() {
  local pid exe
  [[ -r $PID_FILE ]] || return 1
  pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ ${exe##*/} == sshd ]] || return 1
  # sshd rewrites its title to "sshd: /usr/sbin/sshd -f CONFIG ... [listener] ...".
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- " -f $CONFIG " || return 1
  echo "$pid"
}

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

# kill_recorded: SIGTERM the recorded sshd (only it), SIGKILL after 10 s; drop the PID file.
kill_recorded() {
  local pid
  if pid=$(pid_of); then
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 100; then
      log "SIGKILL to $pid: still running 10 s after SIGTERM"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 50 || die "$pid survived SIGKILL"
    fi
  fi
  rm -f "$PID_FILE"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

tails() {
  [[ -s $DIR/log/sshd.log ]] || return 0
  echo "---- tail $DIR/log/sshd.log" >&2
  tail -n 25 "$DIR/log/sshd.log" >&2
}

install_if_missing() {
  [[ -x $SSHD ]] && return 0
  [[ $EUID -eq 0 ]] || die "$SSHD is not installed; as root run: apt-get install -y openssh-server"
  local t0
  t0=$(now)
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get update"
  apt-get update -q >&2 || die "apt-get update failed; openssh-server is not installed"
  log "installing openssh-server"
  apt-get install -y -q openssh-server >&2 || die "apt-get install -y openssh-server failed"
  [[ -x $SSHD ]] || die "$SSHD still missing after apt-get install"
  log "installed in $(elapsed "$t0") s"
}

# The client side never reads the user's ~/.ssh (config, known_hosts, agent keys).
SSH_OPTS=()
client_opts() {
  SSH_OPTS=(-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=2 -o LogLevel=ERROR
    -i "$DIR/client_key" -P "$PORT")
}

write_config() {
  ssh-keygen -q -t ed25519 -N "" -C walrust-sftp-test-host -f "$DIR/host_key"
  ssh-keygen -q -t ed25519 -N "" -C walrust-sftp-test-client -f "$DIR/client_key"
  cp "$DIR/client_key.pub" "$DIR/authorized_keys"
  cat >"$CONFIG" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $LOGIN
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
LogLevel ERROR
MaxStartups 100
MaxSessions 100
EOF
  # OpenSSH 9.8+ delays sources that connect often or fail; the tests connect many times a second.
  if "$SSHD" -T -f "$CONFIG" -o PerSourcePenalties=no >/dev/null 2>&1; then
    echo "PerSourcePenalties no" >>"$CONFIG"
  fi
  "$SSHD" -t -f "$CONFIG" 2>>"$DIR/log/sshd.log" || die "sshd rejected $CONFIG"
}

# ready: sshd shows a host key, and an sftp session with the client key lists the data dir.
ready() {
  [[ -n $(ssh-keyscan -T 2 -p "$PORT" 127.0.0.1 2>/dev/null) ]] || return 1
  sftp "${SSH_OPTS[@]}" -b - "$LOGIN@127.0.0.1" >/dev/null 2>&1 <<<"ls $DIR/data"
}

wait_ready() {
  local deadline=$(($(date +%s) + START_TIMEOUT))
  while true; do
    # Until the forked shell has exec'd sshd its exe is bash: alive is enough here.
    [[ -e /proc/$(<"$PID_FILE") ]] || die "sshd exited during start"
    ready && return 0
    (($(date +%s) < deadline)) ||
      die "sshd did not serve SFTP on 127.0.0.1:$PORT within ${START_TIMEOUT}s"
    sleep 0.2
  done
}

start_server() {
  local t0
  t0=$(now)
  install_if_missing
  port_in_use "$PORT" && die "port $PORT is already in use (set WALRUST_SFTP_PORT)"
  mkdir -p "$DIR"/{data,log}
  # sshd refuses to start without its privilege-separation directory.
  if [[ ! -d /run/sshd ]]; then
    mkdir -p /run/sshd 2>/dev/null || die "/run/sshd is missing; as root run: mkdir -p /run/sshd"
  fi
  # From here on, a failure stops sshd (the log stays in $DIR/log for a look).
  trap 'rc=$?; if ((rc != 0)); then tails; kill_recorded; log "start failed; log in $DIR/log"; fi' EXIT
  write_config
  client_opts
  # -D: no fork, so $! is the daemon itself.
  setsid "$SSHD" -f "$CONFIG" -E "$DIR/log/sshd.log" -D \
    </dev/null >>"$DIR/log/sshd.log" 2>&1 9>&- &
  echo $! >"$PID_FILE"
  wait_ready
  cat >"$DIR/env" <<EOF
export WALRUST_TEST_SFTP_URL=sftp://$LOGIN@127.0.0.1:$PORT$DIR/data/walrust-test-runs
export WALRUST_SFTP_KEY_PATH=$DIR/client_key
export WALRUST_TEST_SFTP_HOST_KEY='$(awk '{ print $1 " " $2 }' "$DIR/host_key.pub")'
export WALRUST_TEST_SFTP_DIR=$DIR/data
EOF
  trap - EXIT
  log "SFTP ready on 127.0.0.1:$PORT in $(elapsed "$t0") s; serving $DIR/data"
}

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
  log "stopped (state kept in $DIR)"
}

cmd_status() {
  local pid rss
  if pid=$(pid_of) && [[ -r $DIR/env ]]; then
    rss=$(awk '/^VmRSS/ { print $2 / 1024 " MB" }' "/proc/$pid/status")
    echo "sshd pid $pid rss $rss"
    echo "url $(sed -n 's/^export WALRUST_TEST_SFTP_URL=//p' "$DIR/env") data $DIR/data"
    return 0
  fi
  echo "sshd not running"
  return 1
}

# Serialise start/stop/status across concurrent callers; the lock file lives beside the state dir.
mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
env)
  running || die "no SFTP test server is running (state dir $DIR); run: scripts/sftp-test-server.sh start"
  print_env
  ;;
status) cmd_status ;;
*)
  echo "usage: $0 start|stop|env|status" >&2
  exit 2
  ;;
esac
