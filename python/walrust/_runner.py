"""Finding the walrust executable and running one command of it to completion."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any, List, Mapping, Optional, Sequence, Union

from .errors import EXIT_GENERAL, WalrustError, WalrustTimeoutError, error_message

Executable = Union[str, "os.PathLike[str]", Sequence[str]]


def resolve_executable(executable: Optional[Executable]) -> List[str]:
    """The argv prefix that starts walrust: from PATH, a file path, or a given argv list."""
    if executable is None:
        found = shutil.which("walrust")
        if found is None:
            raise FileNotFoundError(
                "walrust is not on PATH; pass executable= a path to the bundle (dist/walrust) "
                "or an argv list such as ['deno', 'run', '-A', '/path/to/walrust/main.ts']")
        return [found]
    if isinstance(executable, (str, os.PathLike)):
        path = os.fspath(executable)
        if os.sep not in path and not (os.altsep and os.altsep in path):
            found = shutil.which(path)
            if found is None:
                raise FileNotFoundError(f"{path!r} is not on PATH")
            return [found]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"walrust executable not found: {path}")
        if not os.access(path, os.X_OK):
            raise PermissionError(
                f"{path} is not executable (chmod +x it, or pass "
                f"executable=['deno', 'run', '-A', '--no-config', {path!r}])")
        return [os.path.abspath(path)]
    argv = [os.fspath(a) for a in executable]
    if not argv:
        raise ValueError("executable: an empty argv list")
    return argv


def child_env(extra: Optional[Mapping[str, str]]) -> dict:
    """This process's environment with `extra` merged over it."""
    env = dict(os.environ)
    if extra:
        env.update({str(k): str(v) for k, v in extra.items()})
    return env


def run(argv: List[str], env: dict, timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """Run argv to completion; a non-zero exit raises WalrustError with walrust's message."""
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # subprocess.run has already killed the child
        stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise WalrustTimeoutError(EXIT_GENERAL, f"walrust did not finish within {timeout}s",
                                  stderr, argv) from None
    if proc.returncode != 0:
        raise WalrustError(proc.returncode, error_message(proc.stderr, proc.returncode),
                           proc.stderr, argv)
    return proc


def parse_json(proc: subprocess.CompletedProcess) -> Any:
    """The JSON document walrust printed on stdout."""
    try:
        return json.loads(proc.stdout)
    except ValueError:
        shown = proc.stdout.strip()[:200]
        raise WalrustError(EXIT_GENERAL, f"walrust printed no JSON on stdout: {shown!r}",
                           proc.stderr, proc.args) from None
