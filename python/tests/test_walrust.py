"""Tests of the walrust Python package against the real CLI bundle (dist/walrust).

The bundle comes from $WALRUST_BUNDLE, else `deno task bundle` runs once in the repository.
Every database is written by Python's sqlite3 in WAL mode and replicated to a file:// replica
under pytest's tmp_path; S3 is used only when the S3 test server's variables are set.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent
REPO = PACKAGE_ROOT.parent
sys.path.insert(0, str(PACKAGE_ROOT))

import walrust  # noqa: E402
from walrust import (  # noqa: E402
    EXIT_CONFIG,
    EXIT_DATABASE,
    EXIT_RESTORE,
    Walrust,
    WalrustError,
    WalrustTimeoutError,
)


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bundle() -> str:
    """Path of the walrust bundle under test."""
    given = os.environ.get("WALRUST_BUNDLE")
    if given:
        assert os.access(given, os.X_OK), f"WALRUST_BUNDLE={given} is not an executable file"
        return given
    if shutil.which("deno") is None:
        pytest.fail("deno is not on PATH: cannot build the bundle (or set WALRUST_BUNDLE)")
    proc = subprocess.run(["deno", "task", "bundle"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, f"deno task bundle failed:\n{proc.stdout}\n{proc.stderr}"
    return str(REPO / "dist" / "walrust")


def make_db(path: Path, rows: int = 0) -> sqlite3.Connection:
    """A WAL-mode database with table t(id, v) holding `rows` rows; the connection stays open."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    insert(conn, 1, rows)
    return conn


def insert(conn: sqlite3.Connection, first: int, count: int) -> None:
    """Rows first..first+count-1 in one transaction."""
    if count == 0:
        return
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t(id, v) VALUES (?, ?)",
                     [(i, f"row {i} " + "x" * 200) for i in range(first, first + count)])
    conn.execute("COMMIT")


def rows_of(path: Path) -> list:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    finally:
        conn.close()


def integrity(path: Path) -> str:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def children() -> set:
    """PIDs of this process's live (non-zombie) children, from /proc."""
    me = str(os.getpid())
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[1] == me and fields[0] != "Z":
            out.add(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(what: str, fn, timeout: float = 30.0):
    """Poll fn() until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def replica_txid(w: Walrust, name: str) -> int:
    return next((d["txid"] for d in w.list() if d["name"] == name), 0)


# -- one replicated database shared by the read-side tests ----------------------------------------


@pytest.fixture(scope="module")
def replicated(tmp_path_factory, bundle):
    """app.db replicated by watch: 10 rows (TXID t1, time `mid` after it), then 20 more."""
    tmp = tmp_path_factory.mktemp("replicated")
    db = tmp / "app.db"
    conn = make_db(db, rows=10)
    w = Walrust(f"file://{tmp}/replica", executable=bundle)
    before = children()
    with w.watch(db, wal_sync_interval=0.1) as h:
        assert h.pid in children() - before
        t1 = wait_for("the first state in the replica", lambda: replica_txid(w, "app.db"))
        time.sleep(0.05)
        mid = dt.datetime.now(dt.timezone.utc)
        time.sleep(0.05)
        last = t1
        for first in (11, 21):
            insert(conn, first, 10)
            last = wait_for("each batch in the replica",
                            lambda: max(replica_txid(w, "app.db") - last, 0)) + last
        code = h.stop()
    assert code == 0
    assert not alive(h.pid) and h.pid not in children()
    assert "watching" in h.stderr
    conn.close()
    yield {"w": w, "db": db, "tmp": tmp, "t1": t1, "mid": mid, "source": rows_of(db)}


def test_list_reports_the_database_with_int_txid(replicated):
    dbs = replicated["w"].list()
    assert [d["name"] for d in dbs] == ["app.db"]
    d = dbs[0]
    assert isinstance(d["txid"], int) and d["txid"] > replicated["t1"]
    assert d["snapshots"] >= 1 and d["l0"] >= 2 and d["bytes"] > 0
    assert set(d) >= {"l1", "l2", "l3", "oldest", "newest"}


def test_files_have_int_txids_reaching_the_latest(replicated):
    w = replicated["w"]
    files = w.files("app.db")
    assert files, "no files listed"
    for f in files:
        assert isinstance(f["min_txid"], int) and isinstance(f["max_txid"], int)
        assert 1 <= f["min_txid"] <= f["max_txid"]
        assert f["key"].startswith("app.db/") and f["size"] > 0
    assert max(f["max_txid"] for f in files) == replica_txid(w, "app.db")
    assert {f["level"] for f in files} >= {0, 9}


def test_restore_latest_equals_source(replicated, tmp_path):
    out = tmp_path / "latest.db"
    r = replicated["w"].restore("app.db", out)
    assert r["db_path"] == str(out) and r["name"] == "app.db"
    assert r["txid"] == replica_txid(replicated["w"], "app.db")
    assert r["integrity_check"] == "ok" and r["files"] >= 1 and r["bytes"] > 0
    assert rows_of(out) == replicated["source"] and len(rows_of(out)) == 30
    assert integrity(out) == "ok"


def test_restore_refuses_existing_output_unless_forced(replicated, tmp_path):
    out = tmp_path / "twice.db"
    w = replicated["w"]
    w.restore("app.db", out)
    with pytest.raises(WalrustError) as e:
        w.restore("app.db", out)
    assert e.value.exit_code != 0
    assert w.restore("app.db", out, force=True)["integrity_check"] == "ok"


def test_restore_at_txid(replicated, tmp_path):
    out = tmp_path / "t1.db"
    r = replicated["w"].restore("app.db", out, txid=replicated["t1"])
    assert r["txid"] == replicated["t1"]
    assert rows_of(out) == replicated["source"][:10]
    assert integrity(out) == "ok"


def test_restore_at_datetime_and_string(replicated, tmp_path):
    w = replicated["w"]
    r = w.restore("app.db", tmp_path / "mid.db", at=replicated["mid"])
    assert r["txid"] == replicated["t1"]
    assert rows_of(tmp_path / "mid.db") == replicated["source"][:10]
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)).isoformat()
    r = w.restore("app.db", tmp_path / "later.db", at=later)
    assert rows_of(tmp_path / "later.db") == replicated["source"]


def test_format_time_is_rfc3339_utc():
    tz = dt.timezone(dt.timedelta(hours=2))
    assert walrust.format_time(dt.datetime(2026, 1, 2, 5, 4, 5, 678901, tzinfo=tz)) == \
        "2026-01-02T03:04:05.678Z"
    assert walrust.format_time("-15m") == "-15m"
    with pytest.raises(TypeError):
        walrust.format_time(12)  # type: ignore[arg-type]


def test_verify_proves_the_backup_and_leaves_nothing_behind(replicated, bundle, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    w = Walrust(replicated["w"].bucket, executable=bundle, env={"TMPDIR": str(scratch)})
    v = w.verify("app.db", all_files=True)
    assert v["ok"] is True and v["exit_code"] == 0 and v["name"] == "app.db"
    assert v["txid"] == replica_txid(w, "app.db")
    assert v["files_checked"] >= 1 and v["errors"] == []
    assert list(scratch.iterdir()) == [], "verify left its restore behind"
    with pytest.raises(WalrustError) as e:
        w.verify("missing.db")
    assert e.value.exit_code == 6
    assert list(scratch.iterdir()) == []


def test_snapshot_without_watcher(replicated):
    w = replicated["w"]
    before = sum(1 for f in w.files("app.db") if f["level"] == 9)
    s = w.snapshot(replicated["db"])
    assert s["txid"] > 0 and s["via_watcher"] is False
    assert s["db_path"] == str(replicated["db"])
    assert s["txid"] == replica_txid(w, "app.db")
    assert sum(1 for f in w.files("app.db") if f["level"] == 9) > before


def test_executable_as_argv_list(replicated, bundle):
    w = Walrust(replicated["w"].bucket, executable=["deno", "run", "-A", "--no-config", bundle])
    assert w.list() == replicated["w"].list()


def test_config_file_supplies_the_bucket(replicated, bundle, tmp_path):
    cfg = tmp_path / "walrust.toml"
    cfg.write_text(f'[s3]\nbucket = "{replicated["w"].bucket}"\n')
    w = Walrust(None, config=cfg, executable=bundle)
    assert [d["name"] for d in w.list()] == ["app.db"]


# -- watch handle lifecycle ------------------------------------------------------------------------


def test_snapshot_through_running_watcher(tmp_path, bundle):
    db = tmp_path / "live.db"
    conn = make_db(db, rows=5)
    w = Walrust(f"file://{tmp_path}/replica", executable=bundle)
    with w.watch([db], wal_sync_interval=0.1) as h:
        wait_for("first upload", lambda: replica_txid(w, "live.db"))
        insert(conn, 6, 5)
        s = w.snapshot(db)
        assert s["via_watcher"] is True and s["txid"] > 0
        pid = h.pid
    assert not alive(pid)
    conn.close()
    out = tmp_path / "out.db"
    w.restore("live.db", out)
    assert rows_of(out) == rows_of(db)


def test_with_block_exception_still_stops_the_child(tmp_path, bundle):
    db = tmp_path / "a.db"
    make_db(db, rows=1).close()
    w = Walrust(f"file://{tmp_path}/replica", executable=bundle)
    with pytest.raises(RuntimeError, match="boom"):
        with w.watch(db) as h:
            pid = h.pid
            assert h.running()
            raise RuntimeError("boom")
    assert not alive(pid) and pid not in children()
    assert h.returncode == 0


def test_stop_is_idempotent_and_once_exits_by_itself(tmp_path, bundle):
    db = tmp_path / "b.db"
    make_db(db, rows=3).close()
    w = Walrust(f"file://{tmp_path}/replica", executable=bundle)
    h = w.watch(db, once=True)
    assert h.stop() == 0 and h.stop() == 0
    assert not alive(h.pid)
    assert replica_txid(w, "b.db") > 0


def test_watch_that_fails_to_start_raises_its_exit_code(tmp_path, bundle):
    before = children()
    w = Walrust(f"file://{tmp_path}/replica", executable=bundle)
    with pytest.raises(WalrustError) as e:
        w.watch(tmp_path / "missing.db")
    assert e.value.exit_code == EXIT_DATABASE
    assert "missing.db" in e.value.message
    assert children() - before == set()


def test_watch_start_timeout_kills_the_child(tmp_path, bundle):
    db = tmp_path / "c.db"
    make_db(db, rows=1).close()
    before = children()
    # At log level error, walrust never logs "watching": the wait times out (env is merged in).
    w = Walrust(f"file://{tmp_path}/replica", executable=bundle, env={"WALRUST_LOG": "error"})
    t0 = time.monotonic()
    with pytest.raises(WalrustTimeoutError):
        w.watch(db, start_timeout=3)
    assert time.monotonic() - t0 < 20
    assert children() - before == set()


# -- errors ---------------------------------------------------------------------------------------


def test_restore_of_missing_name_exits_6(tmp_path, bundle):
    w = Walrust(f"file://{tmp_path}/replica", executable=bundle)
    with pytest.raises(WalrustError) as e:
        w.restore("nope.db", tmp_path / "out.db")
    err = e.value
    assert err.exit_code == EXIT_RESTORE == 6
    assert err.message and "\n" not in err.message and not err.message.startswith("error:")
    assert "error: " in err.stderr
    assert not (tmp_path / "out.db").exists()


def test_bad_bucket_exits_2(bundle):
    with pytest.raises(WalrustError) as e:
        Walrust("ftp://example/x", executable=bundle).list()
    assert e.value.exit_code == EXIT_CONFIG == 2
    assert "ftp" in e.value.message


def test_exit_code_constants_match_the_cli_help(bundle):
    out = subprocess.run([bundle, "--help"], capture_output=True, text=True).stdout
    named = ", ".join(f"{c} {n}" for c, n in sorted(walrust.EXIT_NAMES.items()))
    assert f"Exit codes: {named}." in out.replace("\n", " ")


def test_executable_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        Walrust("x", executable=tmp_path / "no-such-walrust")
    env_path = os.environ.get("PATH", "")
    try:
        os.environ["PATH"] = str(tmp_path)
        with pytest.raises(FileNotFoundError, match="not on PATH"):
            Walrust("x")
    finally:
        os.environ["PATH"] = env_path


# -- S3 via --endpoint (only with the S3 test server) ---------------------------------------------


def test_s3_round_trip_with_endpoint(tmp_path, bundle, monkeypatch):
    names = ("WALRUST_TEST_BUCKET", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
             "AWS_SECRET_ACCESS_KEY")
    if not all(os.environ.get(n) for n in names):
        if os.environ.get("WALRUST_REQUIRE_S3") == "1":
            pytest.fail(f"WALRUST_REQUIRE_S3=1 but {', '.join(names)} are not all set")
        pytest.skip("no S3 test server (eval \"$(scripts/s3-test-server.sh env)\")")
    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # so only --endpoint can carry it
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    bucket = f"s3://{os.environ['WALRUST_TEST_BUCKET']}/python-{uuid.uuid4().hex[:12]}"
    db = tmp_path / "s3.db"
    make_db(db, rows=7).close()
    w = Walrust(bucket, endpoint=endpoint, executable=bundle)
    assert w.watch(db, once=True).stop() == 0
    assert [d["name"] for d in w.list()] == ["s3.db"]
    r = w.restore("s3.db", tmp_path / "out.db")
    assert r["integrity_check"] == "ok" and rows_of(tmp_path / "out.db") == rows_of(db)


# -- installing the package offline ---------------------------------------------------------------


def _can_build(python: str) -> bool:
    """True when `python` has setuptools >= 61 and can make wheels (wheel, or setuptools >= 70.1)."""
    code = ("import setuptools as s, importlib.util as u; v = tuple(int(x) for x in "
            "s.__version__.split('.')[:2]); "
            "raise SystemExit(0 if v >= (61, 0) and (v >= (70, 1) or u.find_spec('wheel')) else 1)")
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def test_pip_install_offline_no_build_isolation(tmp_path):
    candidates = [sys.executable, "/usr/bin/python3"]
    python = next((p for p in candidates if os.path.exists(p) and _can_build(p)), None)
    if python is None:
        pytest.fail("no Python here has setuptools>=61 plus wheel (Debian: apt-get install "
                    "python3-setuptools python3-wheel): pip install --no-build-isolation cannot work")
    src = tmp_path / "src"  # a copy, so the build writes nothing into the checkout
    shutil.copytree(PACKAGE_ROOT, src, ignore=shutil.ignore_patterns("tests", "__pycache__",
                                                                       "build", "*.egg-info"))
    target = tmp_path / "site"
    proc = subprocess.run([python, "-m", "pip", "install", "--no-index", "--no-build-isolation",
                           "--no-deps", "--target", str(target), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = subprocess.run(
        [python, "-c", "import walrust; print(walrust.__file__, walrust.__version__)"],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)})
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(str(target)) and walrust.__version__ in check.stdout
