#!/usr/bin/env bash
# A local WebDAV server (Debian's rclone, `rclone serve webdav`) on 127.0.0.1 for walrust's tests.
#   scripts/webdav-test-server.sh start|stop|env|status
# Environment: WALRUST_WEBDAV_DIR (state, default ${TMPDIR:-/tmp}/walrust-webdav), WALRUST_WEBDAV_PORT
# (default 7481), WALRUST_WEBDAV_START_TIMEOUT (s, default 30).
set -euo pipefail

DIR=${WALRUST_WEBDAV_DIR:-${TMPDIR:-/tmp}/walrust-webdav}
PORT=${WALRUST_WEBDAV_PORT:-7481}
START_TIMEOUT=${WALRUST_WEBDAV_START_TIMEOUT:-30}
# Fixed throw-away test credentials, valid only for this local server.
USERNAME=walrust
PASSWORD=walrust-test-webdav-password
PID_FILE=$DIR/rclone.pid

# For lib/test-server.sh (see its header).
TS_NAME=webdav-test-server
TS_KIND=WebDAV
TS_EXE=rclone
TS_CMDLINE=
TS_DAEMON=rclone
TS_STOPPED="stopped (state kept in $DIR)"
# shellcheck source-path=SCRIPTDIR source=lib/test-server.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/test-server.sh"

install_if_missing() {
  command -v rclone >/dev/null && return 0
  [[ $EUID -eq 0 ]] || die "rclone is not installed; as root run: apt-get install -y rclone"
  local t0
  t0=$(now)
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get update"
  apt-get update -q >&2 || die "apt-get update failed; rclone is not installed"
  log "installing rclone"
  apt-get install -y -q rclone >&2 || die "apt-get install -y rclone failed"
  command -v rclone >/dev/null || die "rclone still not on PATH after apt-get install"
  log "installed in $(elapsed "$t0") s"
}

# root_status: the HTTP status of an authenticated PROPFIND (Depth 0) on /, or 000 when there is
# no answer. curl if present, else python3, else bash's /dev/tcp.
root_status() {
  if command -v curl >/dev/null; then
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 -u "$USERNAME:$PASSWORD" \
      -X PROPFIND -H 'Depth: 0' "http://127.0.0.1:$PORT/" || true
  elif command -v python3 >/dev/null; then
    python3 - "$PORT" "$USERNAME:$PASSWORD" <<'EOF' 2>/dev/null || echo 000
import base64, http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
auth = base64.b64encode(sys.argv[2].encode()).decode()
c.request("PROPFIND", "/", headers={"Depth": "0", "Authorization": "Basic " + auth})
print(c.getresponse().status)
EOF
  else
    local line auth
    auth=$(printf '%s' "$USERNAME:$PASSWORD" | base64 -w0)
    line=$(
      exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$PORT" || exit 0
      printf 'PROPFIND / HTTP/1.0\r\nHost: 127.0.0.1\r\nDepth: 0\r\nAuthorization: Basic %s\r\n\r\n' \
        "$auth" >&3
      timeout 2 head -n 1 <&3
    ) || true
    [[ $line =~ ^HTTP/[0-9.]+\ ([0-9]{3}) ]] && echo "${BASH_REMATCH[1]}" || echo 000
  fi
}

wait_http() {
  local deadline=$(($(date +%s) + START_TIMEOUT)) code
  while true; do
    code=$(root_status)
    [[ $code == 2[0-9][0-9] ]] && return 0
    spawned_alive "$PID_FILE" || die "rclone exited during start"
    (($(date +%s) < deadline)) ||
      die "rclone did not answer PROPFIND on http://127.0.0.1:$PORT/ within ${START_TIMEOUT}s (last status $code)"
    sleep 0.2
  done
}

start_server() {
  local t0
  t0=$(now)
  install_if_missing
  port_in_use "$PORT" && die "port $PORT is already in use (set WALRUST_WEBDAV_PORT)"
  mkdir -p "$DIR"/{data,log,cache}
  # An empty config of its own: rclone neither reads nor writes the user's ~/.config/rclone.
  : >"$DIR/rclone.conf"
  # From here on, a failure stops rclone (the log stays in $DIR/log for a look).
  arm_failed_start "log in $DIR/log"
  # rclone's directory cache stays on: its own PUT/MOVE/DELETE update it, so a listing right after
  # one sees the change, and with it off every request re-reads the folder (a folder of 2,500
  # objects made each request O(n): minutes for the contract's bulk cases). --poll-interval 0:
  # nothing else writes the folder.
  RCLONE_CONFIG=$DIR/rclone.conf setsid rclone serve webdav "$DIR/data" \
    --addr "127.0.0.1:$PORT" --user "$USERNAME" --pass "$PASSWORD" \
    --poll-interval 0 --vfs-cache-mode off --cache-dir "$DIR/cache" \
    </dev/null >>"$DIR/log/rclone.log" 2>&1 9>&- &
  echo $! >"$PID_FILE"
  wait_http
  cat >"$DIR/env" <<EOF
export WALRUST_TEST_WEBDAV_URL=webdav://127.0.0.1:$PORT/walrust-test-runs
export WALRUST_WEBDAV_USERNAME=$USERNAME
export WALRUST_WEBDAV_PASSWORD=$PASSWORD
export WALRUST_TEST_WEBDAV_DIR=$DIR/data
EOF
  trap - EXIT
  log "WebDAV ready on http://127.0.0.1:$PORT in $(elapsed "$t0") s; serving $DIR/data"
}

status_detail() {
  echo "url $(sed -n 's/^export WALRUST_TEST_WEBDAV_URL=//p' "$DIR/env") data $DIR/data"
}

ts_main "$@"
