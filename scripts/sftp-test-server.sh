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

# For lib/test-server.sh (see its header). sshd rewrites its title to
# "sshd: /usr/sbin/sshd -f CONFIG ... [listener] ...": the config tells ours from the system's.
TS_NAME=sftp-test-server
TS_KIND=SFTP
TS_EXE=sshd
TS_CMDLINE=" -f $CONFIG "
TS_DAEMON=sshd
TS_STOPPED="stopped (state kept in $DIR)"
# shellcheck source-path=SCRIPTDIR source=lib/test-server.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/test-server.sh"

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
    spawned_alive "$PID_FILE" || die "sshd exited during start"
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
  arm_failed_start "log in $DIR/log"
  write_config
  client_opts
  # -D: no fork, so $! is the daemon itself. (-E only names sshd's log; nothing here reads it.)
  # shellcheck disable=SC2094
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

status_detail() {
  echo "url $(sed -n 's/^export WALRUST_TEST_SFTP_URL=//p' "$DIR/env") data $DIR/data"
}

ts_main "$@"
