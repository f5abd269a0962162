#!/usr/bin/env bash
# Bundle smoke test: `deno task bundle`, copy dist/walrust to a folder outside the checkout, and
# there run --version and one replicate/restore round trip with an empty DENO_DIR (so the bundle
# proves it needs nothing but `deno`). Prints "ok - ..." / "not ok - ..." per check and a last
# line "bundle-smoke: N passed, N failed"; exits 1 if any check failed.
#
# Usage: scripts/bundle-smoke.sh [DIR]   DIR (made if missing) keeps the copy as DIR/walrust,
#                                        e.g. for WALRUST_BUNDLE; without DIR a temp dir is used
#                                        and removed.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"

passed=0
failed=0
check() { # check NAME COMMAND...: run, count, say
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "ok - $name"
  else
    failed=$((failed + 1))
    echo "not ok - $name"
  fi
}
finish() {
  echo "bundle-smoke: ${passed} passed, ${failed} failed"
  [ "$failed" = 0 ]
  exit
}

if [ $# -ge 1 ]; then
  mkdir -p "$1" && out="$(cd "$1" && pwd -P)" || exit 1
  keep=1
else
  out="$(mktemp -d)" || exit 1
  keep=0
fi
work="$(mktemp -d)" || exit 1
cleanup() {
  rm -rf "$work"
  if [ "$keep" = 0 ]; then rm -rf "$out"; fi
}
trap cleanup EXIT

outside() { case "$1/" in "$repo"/*) return 1 ;; *) return 0 ;; esac; }
check "copy folder $out is outside the checkout $repo" outside "$out"
check "work folder $work is outside the checkout" outside "$work"

build() { (cd "$repo" && deno task bundle >"$work/bundle.log" 2>&1) || {
  cat "$work/bundle.log"
  return 1
}; }
check "deno task bundle" build
if ! cp "$repo/dist/walrust" "$out/walrust" 2>/dev/null; then
  check "dist/walrust exists" false
  finish
fi
if ! command -v sqlite3 >/dev/null 2>&1; then
  check "sqlite3 CLI on PATH (apt-get install sqlite3)" false
  finish
fi

# From here on: the copy, in a folder outside the checkout, with a Deno cache of its own.
cd "$work" || exit 1
export DENO_DIR="$work/deno-dir"
bin="$out/walrust"
version() { "$bin" --version | tee "$work/version.txt" && grep -Eq '^walrust [0-9]' "$work/version.txt"; }
check "walrust --version" version

rows=250
make_db() {
  sqlite3 app.db "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
    INSERT INTO t SELECT i, hex(randomblob(100)) FROM n;" >/dev/null &&
    [ "$(sqlite3 app.db 'PRAGMA journal_mode')" = wal ]
}
check "sqlite3 writes a WAL database ($rows rows)" make_db
replica="file://$work/replica"
check "walrust watch app.db --once" "$bin" watch app.db --bucket "$replica" --once
check "walrust restore app.db" "$bin" restore app.db -o restored.db --bucket "$replica"
same() {
  local a b
  a=$(sqlite3 app.db 'SELECT count(*), total(length(v)) FROM t')
  b=$(sqlite3 restored.db 'SELECT count(*), total(length(v)) FROM t')
  echo "source: $a  restored: $b"
  [ "$a" = "$b" ] && [ "${a%%|*}" = "$rows" ]
}
check "restored rows equal the source" same
check "restored database passes integrity_check" \
  test "$(sqlite3 restored.db 'PRAGMA integrity_check')" = ok
finish
