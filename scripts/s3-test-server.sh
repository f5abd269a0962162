#!/usr/bin/env bash
# A one-node Ceph RGW on 127.0.0.1 (memstore OSD) for walrust's S3 tests; recipe: toolchain.md §3.
#   scripts/s3-test-server.sh start|stop|env|status
# Environment: WALRUST_S3_DIR (state, default ${TMPDIR:-/tmp}/walrust-rgw), WALRUST_S3_PORT (RGW,
# default 7480), WALRUST_S3_MON_PORT (mon msgr2, default 3300), WALRUST_S3_START_TIMEOUT (s, 90).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${WALRUST_S3_DIR:-${TMPDIR:-/tmp}/walrust-rgw}
PORT=${WALRUST_S3_PORT:-7480}
MON_PORT=${WALRUST_S3_MON_PORT:-3300}
START_TIMEOUT=${WALRUST_S3_START_TIMEOUT:-90}
BUCKET=walrust-test
# Fixed throw-away test credentials, valid only for this local server.
ACCESS_KEY=WALRUSTTESTACCESSKEY
SECRET_KEY=walrust-test-secret-key
DAEMONS=(mon osd radosgw) # each has $DIR/pids/<name> and its executable name below
declare -A EXE=([mon]=ceph-mon [osd]=ceph-osd [radosgw]=radosgw)

# For lib/test-server.sh (see its header); this script redefines the single-daemon functions.
TS_NAME=s3-test-server
TS_KIND=S3
# shellcheck source-path=SCRIPTDIR source=lib/test-server.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/test-server.sh"

# pid_of NAME: the recorded PID, if the process still runs the expected executable (guards PID reuse).
pid_of() { recorded_pid "$DIR/pids/$1" "${EXE[$1]}"; }

running() {
  local d
  for d in "${DAEMONS[@]}"; do pid_of "$d" >/dev/null || return 1; done
  [[ -r $DIR/env ]]
}

# stop_daemons NAME...: SIGTERM the recorded daemons (only those), wait for them to exit,
# SIGKILL after 10 s.
stop_daemons() {
  local d pid pids=()
  for d in "$@"; do
    if pid=$(pid_of "$d"); then
      pids+=("$pid")
    fi
  done
  stop_pids "${pids[@]}"
}

# One at a time, clients first: radosgw hangs in shutdown without its OSD, and the OSD waits
# 5 s for a mon that is gone.
kill_recorded() {
  stop_daemons radosgw
  stop_daemons osd
  stop_daemons mon
}

install_if_missing() {
  local pkgs=() b
  for b in radosgw radosgw-admin ceph-mon ceph-osd monmaptool ceph; do
    command -v "$b" >/dev/null || pkgs=(radosgw ceph-mon ceph-osd)
  done
  command -v curl >/dev/null || pkgs+=(curl)
  command -v deno >/dev/null || die "deno is not on PATH (needed to create the bucket)"
  ((${#pkgs[@]} == 0)) && return 0
  [[ $EUID -eq 0 ]] || die "missing packages; as root run: apt-get install --no-install-recommends ${pkgs[*]}"
  local t0
  t0=$(now)
  export DEBIAN_FRONTEND=noninteractive
  local policy
  policy=$(apt-cache policy radosgw 2>/dev/null || true)
  if [[ $policy != *"Candidate: "[0-9]* ]]; then
    log "apt-get update"
    apt-get update -q >&2
  fi
  log "installing ${pkgs[*]}"
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2
  log "installed in $(elapsed "$t0") s"
}

# spawn NAME CMD...: start a daemon in its own session, output to its log file, record its PID.
spawn() {
  local name=$1
  shift
  MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2} setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 9>&- &
  echo $! >"$DIR/pids/$name"
}

wait_http() {
  local deadline=$(($(date +%s) + START_TIMEOUT)) d
  until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/"; do
    for d in "${DAEMONS[@]}"; do
      spawned_alive "$DIR/pids/$d" || die "$d exited during start"
    done
    (($(date +%s) < deadline)) ||
      die "RGW did not answer on http://127.0.0.1:$PORT within ${START_TIMEOUT}s"
    sleep 0.5
  done
}

create_bucket() {
  cat >"$DIR/mkbucket.ts" <<'EOF'
// Creates the test bucket; credentials and endpoint come from the AWS_* environment.
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
const client = new S3Client({
  forcePathStyle: true,
  maxAttempts: 10,
  requestChecksumCalculation: "WHEN_REQUIRED",
  responseChecksumValidation: "WHEN_REQUIRED",
});
try {
  await client.send(new CreateBucketCommand({ Bucket: Deno.args[0] }));
} catch (e) {
  if (!(e instanceof Error) || e.name !== "BucketAlreadyOwnedByYou") throw e;
} finally {
  client.destroy();
}
EOF
  # --no-lock: never rewrite the repo's deno.lock from a helper script.
  AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY AWS_REGION=us-east-1 \
    AWS_ENDPOINT_URL_S3="http://127.0.0.1:$PORT" \
    deno run -A --no-lock --config "$REPO/deno.json" "$DIR/mkbucket.ts" "$BUCKET" \
    >>"$DIR/log/setup.log" 2>&1 || die "creating bucket $BUCKET failed"
}

start_server() {
  local t0 fsid osd root_flags=()
  t0=$(now)
  install_if_missing
  local t1
  t1=$(now)
  port_in_use "$PORT" && die "port $PORT is already in use (set WALRUST_S3_PORT)"
  port_in_use "$MON_PORT" && die "port $MON_PORT is already in use (set WALRUST_S3_MON_PORT)"

  mkdir -p "$DIR"/{mon,osd,rgw,log,run,pids}
  fsid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$DIR/ceph.conf" <<EOF
[global]
fsid = $fsid
mon initial members = mon0
mon host = v2:127.0.0.1:$MON_PORT
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
mon data = $DIR/mon
osd data = $DIR/osd
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
# RGW creates its pools one by one at start; commit each map change at once, not after 1 s.
paxos propose interval = 0.01
paxos min wait = 0.001
# Everything lives in RAM (memstore): keep the OSD's per-PG op logs short.
osd min pg log entries = 10
osd max pg log entries = 100
osd pg log dups tracked = 10
osd pg log trim min = 10
[client.rgw.rgw0]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw
# Deleted and overwritten data lives in the memstore OSD (RAM) until RGW's garbage collector
# runs: by default 2 h later. Collect within seconds so repeated test runs do not fill it.
rgw gc obj min wait = 5
rgw gc processor period = 5
rgw gc processor max time = 5
EOF
  export CEPH_CONF=$DIR/ceph.conf
  # From here on, a failure stops whatever was started (the logs stay in $DIR for a look).
  arm_failed_start "logs in $DIR/log"

  monmaptool --create --addv mon0 "[v2:127.0.0.1:$MON_PORT]" --fsid "$fsid" "$DIR/monmap" \
    >>"$DIR/log/setup.log" 2>&1
  ceph-mon --id mon0 --mkfs --monmap "$DIR/monmap" >>"$DIR/log/setup.log" 2>&1
  spawn mon ceph-mon -f --id mon0
  osd=$(timeout 60 ceph --connect-timeout 30 osd create 2>>"$DIR/log/setup.log") ||
    die "ceph osd create failed (mon not reachable on 127.0.0.1:$MON_PORT?)"
  ceph-osd --id "$osd" --mkfs >>"$DIR/log/setup.log" 2>&1
  spawn osd ceph-osd -f --id "$osd"
  [[ $EUID -eq 0 ]] && root_flags=(--setuser root --setgroup root)
  # The two ms-*-mode flags are required: without them radosgw loops on
  # "get_initial_auth_request returned -13".
  spawn radosgw radosgw -f -n client.rgw.rgw0 "${root_flags[@]}" --auth-client-required=none \
    --ms-mon-client-mode="crc secure" --ms-client-mode="crc secure"
  wait_http
  timeout 60 radosgw-admin user create --uid=walrust --display-name=walrust \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >>"$DIR/log/setup.log" 2>&1 ||
    die "radosgw-admin user create failed"
  create_bucket
  cat >"$DIR/env" <<EOF
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$PORT
export WALRUST_TEST_BUCKET=$BUCKET
EOF
  trap - EXIT
  log "RGW ready on http://127.0.0.1:$PORT in $(elapsed "$t1") s (total $(elapsed "$t0") s); state in $DIR"
}

cmd_stop() {
  if [[ ! -e $DIR ]]; then
    rm -f "$DIR.lock"
    log "not running"
    return 0
  fi
  kill_recorded
  rm -rf "$DIR" "$DIR.lock"
  log "stopped"
}

cmd_status() {
  local d pid rss ok=0
  for d in mon osd radosgw; do
    if pid=$(pid_of "$d"); then
      rss=$(rss_of "$pid")
      echo "$d pid $pid rss $rss"
    else
      echo "$d not running"
      ok=1
    fi
  done
  if ((ok == 0)) && [[ -r $DIR/env ]]; then
    echo "endpoint $(sed -n 's/^export AWS_ENDPOINT_URL_S3=//p' "$DIR/env") bucket $BUCKET state $DIR"
    return 0
  fi
  return 1
}

ts_main "$@"
