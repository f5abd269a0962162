#!/usr/bin/env bash
# A local Azure Blob Storage emulator (npm's Azurite, blob service only) on 127.0.0.1 for walrust's
# tests.
#   scripts/azure-test-server.sh start|stop|env|status
# Environment: WALRUST_AZURE_DIR (state, default ${TMPDIR:-/tmp}/walrust-azure), WALRUST_AZURE_PORT
# (default 7483), WALRUST_AZURE_START_TIMEOUT (s, default 30), WALRUST_AZURITE_CACHE (where npm
# installs Azurite, default ~/.cache/walrust-azurite).
# `env` prints a fresh replica prefix (abs://devstoreaccount1@walrust-test/run-<random>) each call.
set -euo pipefail

DIR=${WALRUST_AZURE_DIR:-${TMPDIR:-/tmp}/walrust-azure}
[[ $DIR == /* ]] || DIR=$PWD/$DIR
PORT=${WALRUST_AZURE_PORT:-7483}
START_TIMEOUT=${WALRUST_AZURE_START_TIMEOUT:-30}
CACHE=${WALRUST_AZURITE_CACHE:-${HOME:-/root}/.cache/walrust-azurite}
# 3.36+ need Node >= 21/22; this one runs on Node 18/20.
AZURITE_VERSION=3.35.0
MAIN=$CACHE/node_modules/azurite/dist/src/blob/main.js
# Azurite's fixed development account and its well-known key (public, emulator only).
ACCOUNT=devstoreaccount1
KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
CONTAINER=walrust-test
PID_FILE=$DIR/azurite.pid

# For lib/test-server.sh (see its header). The cmdline names our Azurite and port, so the check
# never matches another Azurite.
TS_NAME=azure-test-server
TS_KIND=Azure
TS_EXE='node*'
TS_CMDLINE=" $MAIN --blobHost 127.0.0.1 --blobPort $PORT "
TS_DAEMON=azurite
TS_STOPPED="stopped (the data was in memory and is gone; log kept in $DIR/log)"
# shellcheck source-path=SCRIPTDIR source=lib/test-server.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/test-server.sh"

# print_env: the fixed lines, and a replica URL with a prefix of its own for this call.
print_env() {
  local run
  run=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
  echo "export WALRUST_TEST_AZURE_URL=abs://$ACCOUNT@$CONTAINER/run-$run"
  cat "$DIR/env"
}

installed_version() {
  sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$CACHE/node_modules/azurite/package.json" \
    2>/dev/null | head -n 1
}

install_if_missing() {
  command -v node >/dev/null || die "node is not installed (Azurite runs on Node >= 18)"
  [[ $(installed_version) == "$AZURITE_VERSION" && -r $MAIN ]] && return 0
  command -v npm >/dev/null || die "npm is not installed; it is needed once to install Azurite"
  local t0
  t0=$(now)
  log "installing azurite@$AZURITE_VERSION into $CACHE (npm)"
  mkdir -p "$CACHE"
  npm install --prefix "$CACHE" --save-exact --no-audit --no-fund --loglevel=error \
    "azurite@$AZURITE_VERSION" >&2 || die "npm install azurite@$AZURITE_VERSION failed"
  [[ $(installed_version) == "$AZURITE_VERSION" && -r $MAIN ]] ||
    die "azurite@$AZURITE_VERSION still missing from $CACHE after npm install"
  log "installed in $(elapsed "$t0") s"
}

# create_container: "Create Container" signed with the account key (Shared Key); prints the HTTP
# status (201 made, 409 already there) or 000 when nothing answers. Node is there for Azurite.
create_container() {
  node - "$PORT" "$ACCOUNT" "$KEY" "$CONTAINER" <<'EOF' 2>/dev/null || echo 000
const crypto = require("node:crypto");
const http = require("node:http");
const [port, account, key, container] = process.argv.slice(2);
const date = new Date().toUTCString();
const version = "2021-08-06";
// Content-Length 0 signs as "" (API 2015-02-21+); path-style (emulator) URLs name the account
// twice in the canonicalized resource.
const toSign = ["PUT", "", "", "", "", "", "", "", "", "", "", "",
  `x-ms-date:${date}`, `x-ms-version:${version}`,
  `/${account}/${account}/${container}\nrestype:container`].join("\n");
const sig = crypto.createHmac("sha256", Buffer.from(key, "base64")).update(toSign).digest("base64");
const req = http.request({
  host: "127.0.0.1", port: Number(port), method: "PUT", timeout: 2000,
  path: `/${account}/${container}?restype=container`,
  headers: { "x-ms-date": date, "x-ms-version": version, "Content-Length": "0",
    Authorization: `SharedKey ${account}:${sig}` },
}, (res) => { res.resume(); console.log(res.statusCode); });
req.on("timeout", () => req.destroy(new Error("timeout")));
req.on("error", () => console.log("000"));
req.end();
EOF
}

wait_ready() {
  local deadline=$(($(date +%s) + START_TIMEOUT)) code
  while true; do
    spawned_alive "$PID_FILE" || die "Azurite exited during start"
    code=$(create_container)
    [[ $code == 201 || $code == 409 ]] && return 0
    (($(date +%s) < deadline)) ||
      die "Azurite did not create container $CONTAINER on 127.0.0.1:$PORT within ${START_TIMEOUT}s (last status $code)"
    sleep 0.2
  done
}

start_server() {
  local t0
  t0=$(now)
  install_if_missing
  port_in_use "$PORT" && die "port $PORT is already in use (set WALRUST_AZURE_PORT)"
  mkdir -p "$DIR"/{data,log}
  # From here on, a failure stops Azurite (the log stays in $DIR/log for a look).
  arm_failed_start "log in $DIR/log"
  # In memory: a test server needs no durability, and a restart starts empty. --loose and
  # --skipApiVersionCheck: the SDK may speak a newer API version than this Azurite knows.
  # --silent: no access log line per request (the contract's bulk cases make thousands).
  # In-memory mode refuses --location; it runs in $DIR/data in case it writes anything at all.
  (cd "$DIR/data" && exec setsid node "$MAIN" --blobHost 127.0.0.1 --blobPort "$PORT" \
    --inMemoryPersistence --loose --skipApiVersionCheck --disableTelemetry --silent \
    </dev/null >>"$DIR/log/azurite.log" 2>&1 9>&-) &
  echo $! >"$PID_FILE"
  wait_ready
  cat >"$DIR/env" <<EOF
export WALRUST_TEST_AZURE_ENDPOINT=http://127.0.0.1:$PORT/$ACCOUNT
export AZURE_STORAGE_ACCOUNT=$ACCOUNT
export AZURE_STORAGE_KEY=$KEY
EOF
  trap - EXIT
  log "Azurite blob service ready on http://127.0.0.1:$PORT/$ACCOUNT in $(elapsed "$t0") s; container $CONTAINER"
}

status_detail() { echo "endpoint http://127.0.0.1:$PORT/$ACCOUNT container $CONTAINER"; }

ts_main "$@"
