"""walrust's exit codes and the exception a non-zero exit becomes."""

from __future__ import annotations

from typing import Optional

EXIT_OK = 0
EXIT_GENERAL = 1
EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_STORAGE = 4
EXIT_INTEGRITY = 5
EXIT_RESTORE = 6

EXIT_NAMES = {
    EXIT_OK: "ok",
    EXIT_GENERAL: "general",
    EXIT_CONFIG: "config",
    EXIT_DATABASE: "database",
    EXIT_STORAGE: "storage",
    EXIT_INTEGRITY: "integrity",
    EXIT_RESTORE: "restore",
}


class WalrustError(Exception):
    """walrust exited non-zero (or could not be driven).

    ``exit_code`` is the process's exit code (one of the ``EXIT_*`` constants for walrust's own
    errors; 128+N or a negative number when a signal ended it). ``message`` is walrust's one-line
    ``error: ...`` text without the prefix. ``stderr`` holds everything it wrote there.
    """

    def __init__(self, exit_code: int, message: str, stderr: str = "",
                 argv: Optional[list] = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.stderr = stderr
        self.argv = list(argv) if argv is not None else None

    def __str__(self) -> str:
        return f"{self.message} (exit code {self.exit_code})"


class WalrustTimeoutError(WalrustError, TimeoutError):
    """walrust did not start or stop within the time given; the child was killed."""


def error_message(stderr: str, exit_code: int) -> str:
    """The last ``error: ...`` line of stderr (without the prefix), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):]
    if lines:
        return lines[-1]
    return f"walrust exited with code {exit_code} ({EXIT_NAMES.get(exit_code, 'unknown')})"
