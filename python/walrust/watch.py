"""A running `walrust watch` child process and the handle that stops it."""

from __future__ import annotations

import atexit
import collections
import json
import re
import signal
import subprocess
import threading
import time
from typing import List, Optional

from .errors import EXIT_GENERAL, WalrustError, WalrustTimeoutError, error_message

# walrust logs "watching" once every database is replicating (text or JSON log format).
_READY_TEXT = re.compile(r"^\S+\s+INFO\s+watching(\s|$)")
_MAX_LINES = 10_000  # stderr kept in memory: a long-running watcher keeps only its tail
_RUNNING: "set[WatchHandle]" = set()  # strong refs: a forgotten handle is still stopped at exit
_RUNNING_LOCK = threading.Lock()


def _is_ready(line: str) -> bool:
    if _READY_TEXT.match(line):
        return True
    if line.startswith("{"):
        try:
            return json.loads(line).get("msg") == "watching"
        except (ValueError, AttributeError):
            return False
    return False


class WatchHandle:
    """A `walrust watch` child. Stop it with ``stop()`` or use it as a context manager.

    The child is never left behind: ``__exit__`` stops it, a start or stop that times out kills
    it, and any handle still running when the interpreter exits is stopped then.
    """

    def __init__(self, argv: List[str], env: dict, start_timeout: float) -> None:
        self.argv = list(argv)
        self._lines: "collections.deque[str]" = collections.deque(maxlen=_MAX_LINES)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stopped = False
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True, env=env, bufsize=1)
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True,
                                        name=f"walrust-watch-{self._proc.pid}-stderr")
        self._reader.start()
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self._kill()
            raise

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    @property
    def stderr(self) -> str:
        """What the child wrote on stderr so far (its log; the last 10,000 lines)."""
        with self._lock:
            return "".join(self._lines)

    @property
    def returncode(self) -> Optional[int]:
        """The exit code once the child has exited, else None."""
        return self._proc.poll()

    def running(self) -> bool:
        """True while the child process runs."""
        return self._proc.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM the child (it syncs, drains uploads and exits), wait, return its exit code.

        Raises WalrustError when the exit code is not 0, WalrustTimeoutError (after killing the
        child) when it has not exited within `timeout` seconds.
        """
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                raise WalrustTimeoutError(EXIT_GENERAL,
                                          f"walrust watch did not exit within {timeout}s of "
                                          "SIGTERM; killed it", self.stderr, self.argv) from None
        self._finish()
        code = self._proc.returncode
        if code != 0:
            raise WalrustError(code, error_message(self.stderr, code), self.stderr, self.argv)
        return code

    def __enter__(self) -> "WatchHandle":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._stopped:
            return
        try:
            self.stop()
        except WalrustError:
            if exc is None:
                raise  # otherwise keep the with-block's own exception

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited {self._proc.returncode}"
        return f"<WatchHandle pid={self.pid} {state}>"

    def _read_stderr(self) -> None:
        stream = self._proc.stderr
        assert stream is not None
        for line in stream:
            with self._lock:
                self._lines.append(line)
            if not self._ready.is_set() and _is_ready(line):
                self._ready.set()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            code = self._proc.poll()
            if code is not None:
                self._reader.join(5)  # the rest of stderr: the error line, or a late "watching"
                if self._ready.is_set() or code == 0:
                    return  # e.g. --once, or nothing matched the globs: stop() reports the code
                self._finish()
                raise WalrustError(code, error_message(self.stderr, code), self.stderr, self.argv)
            if time.monotonic() >= deadline:
                raise WalrustTimeoutError(EXIT_GENERAL,
                                          f"walrust watch did not report 'watching' within "
                                          f"{timeout}s; killed it", self.stderr, self.argv)

    def _kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._finish()

    def _finish(self) -> None:
        self._reader.join(5)
        if self._proc.stderr is not None and not self._reader.is_alive():
            self._proc.stderr.close()
        self._stopped = True
        with _RUNNING_LOCK:
            _RUNNING.discard(self)


@atexit.register
def _stop_all_at_exit() -> None:
    with _RUNNING_LOCK:
        handles = list(_RUNNING)
    for h in handles:
        try:
            h.stop(timeout=30)
        except WalrustError:
            pass  # exiting anyway; stop() has killed it if it would not stop
