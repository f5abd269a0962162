"""The Walrust client: each method runs one walrust CLI command with --json and returns its result."""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from . import _runner
from .errors import WalrustError
from .watch import WatchHandle

PathLike = Union[str, "os.PathLike[str]"]
_LIST_TXIDS = ("txid",)
_FILE_TXIDS = ("min_txid", "max_txid")
_WINDOW_TXIDS = ("oldest_txid", "newest_txid")


class Walrust:
    """Drives the walrust command-line program; it does not replicate anything by itself.

    `bucket` is the replica (``file:///abs/path``, a plain path, or ``s3://bucket/prefix``; None
    takes ``[s3] bucket`` from the config file). `endpoint` becomes ``--endpoint``, `config`
    the global ``--config FILE``, and `env` is merged into the child's environment (S3
    credentials, ``WALRUST_LOG``, ...). `executable` is a path to the walrust bundle or binary,
    or an argv list such as ``["deno", "run", "-A", "/path/main.ts"]``; by default ``walrust``
    is looked up on PATH. `timeout` (seconds) bounds each one-shot command; watch is not bounded.
    """

    def __init__(self, bucket: Optional[PathLike], endpoint: Optional[str] = None,
                 executable: Optional[_runner.Executable] = None,
                 config: Optional[PathLike] = None, env: Optional[Mapping[str, str]] = None,
                 timeout: Optional[float] = None) -> None:
        self.bucket = os.fspath(bucket) if bucket is not None else None
        self.endpoint = endpoint
        self.config = os.fspath(config) if config is not None else None
        self.env = dict(env) if env else {}
        self.timeout = timeout
        self._argv0 = _runner.resolve_executable(executable)

    # -- commands -------------------------------------------------------------------------------

    def snapshot(self, path: PathLike) -> Dict[str, Any]:
        """Take a level-9 snapshot of the database at `path` now (through its running watcher
        if there is one). Returns ``{"db_path", "txid", "via_watcher"}``."""
        args = ["snapshot", os.fspath(path), *self._replica_args(), "--json"]
        return _hex_to_int(_runner.parse_json(self._run(args)), _LIST_TXIDS)

    def list(self) -> List[Dict[str, Any]]:
        """Every database in the replica: ``{"name", "txid", "snapshots", "l0".."l3", "oldest",
        "newest", "bytes"}`` with `txid` as an int."""
        rows = _runner.parse_json(self._run(["list", *self._replica_args(), "--json"]))
        return [_hex_to_int(r, _LIST_TXIDS) for r in rows]

    def files(self, name: str) -> List[Dict[str, Any]]:
        """One database's files: ``{"level", "min_txid", "max_txid", "size", "created", "key"}``
        with the TXIDs as ints, ordered by level then TXID."""
        rows = _runner.parse_json(self._run(["list", name, *self._replica_args(), "--json"]))
        return [_hex_to_int(r, _FILE_TXIDS) for r in rows]

    def restore(self, name: str, output: PathLike, txid: Optional[int] = None,
                at: Union[str, _dt.datetime, None] = None, force: bool = False) -> Dict[str, Any]:
        """Rebuild database `name` of the replica into `output`: the latest state, exactly
        `txid`, or the state at `at` (RFC 3339 or relative like ``"-15m"``, or a datetime; a
        naive datetime is local time). Returns ``{"db_path", "replica", "name", "txid", "files",
        "bytes", "duration_ms", "integrity_check"}``."""
        args = ["restore", name, "-o", os.fspath(output), *self._replica_args()]
        if txid is not None:
            args += ["--txid", str(int(txid))]
        if at is not None:
            args += ["--point-in-time", format_time(at)]
        if force:
            args.append("--force")
        return _hex_to_int(_runner.parse_json(self._run(args + ["--json"])), _LIST_TXIDS)

    def verify(self, name: str, txid: Optional[int] = None, at: Union[str, _dt.datetime, None] = None,
               all_files: bool = False) -> Dict[str, Any]:
        """Prove that database `name` restores: ``walrust verify NAME --json`` checks the chain,
        restores into a temporary folder, runs ``PRAGMA integrity_check`` and compares the
        recorded checksum. Returns its JSON (``ok``, ``txid``, ``files_checked``, ``window``,
        ...); a damaged or unrestorable backup raises WalrustError (exit 5 or 6)."""
        args = ["verify", name, *self._replica_args(), "--json"]
        if txid is not None:
            args += ["--txid", str(int(txid))]
        if at is not None:
            args += ["--point-in-time", format_time(at)]
        if all_files:
            args.append("--all")
        out = _hex_to_int(_runner.parse_json(self._run(args)), _LIST_TXIDS)
        if isinstance(out.get("window"), dict):
            out["window"] = _hex_to_int(out["window"], _WINDOW_TXIDS)
        return out

    def watch(self, paths: Union[PathLike, Sequence[PathLike], None] = None,
              start_timeout: float = 60, **options: Any) -> WatchHandle:
        """Start ``walrust watch`` on `paths` (none: the config's ``[[databases]]``) and return
        once it logs "watching". Options become flags: ``wal_sync_interval=0.1`` is
        ``--wal-sync-interval 0.1``, ``no_startup_snapshot=True`` is ``--no-startup-snapshot``
        (False or None leave a flag out). A child that exits first raises WalrustError; one
        silent for `start_timeout` seconds is killed (WalrustTimeoutError)."""
        if paths is None:
            dbs: List[str] = []
        elif isinstance(paths, (str, os.PathLike)):
            dbs = [os.fspath(paths)]
        else:
            dbs = [os.fspath(p) for p in paths]
        args = ["watch", *dbs, *self._replica_args(), *_option_flags(options)]
        return WatchHandle(self._argv(args), _runner.child_env(self.env), start_timeout)

    # -- plumbing -------------------------------------------------------------------------------

    def _replica_args(self) -> List[str]:
        out: List[str] = []
        if self.bucket is not None:
            out += ["--bucket", self.bucket]
        if self.endpoint is not None:
            out += ["--endpoint", self.endpoint]
        return out

    def _argv(self, args: List[str]) -> List[str]:
        glob = ["--config", self.config] if self.config is not None else []
        return [*self._argv0, *glob, *args]

    def _run(self, args: List[str]) -> subprocess.CompletedProcess:
        return _runner.run(self._argv(args), _runner.child_env(self.env), self.timeout)


def format_time(at: Union[str, _dt.datetime]) -> str:
    """`at` as walrust's --point-in-time value: strings pass through, datetimes become RFC 3339
    UTC with milliseconds (naive datetimes are taken as local time)."""
    if isinstance(at, str):
        return at
    if isinstance(at, _dt.datetime):
        utc = at.astimezone(_dt.timezone.utc)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    raise TypeError(f"at: expected str or datetime, got {type(at).__name__}")


def _option_flags(options: Mapping[str, Any]) -> List[str]:
    out: List[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is False or value is None:
            continue
        else:
            out += [flag, str(value)]
    return out


def _hex_to_int(row: Dict[str, Any], keys: Sequence[str]) -> Dict[str, Any]:
    out = dict(row)
    for k in keys:
        if isinstance(out.get(k), str):
            out[k] = int(out[k], 16)
    return out
