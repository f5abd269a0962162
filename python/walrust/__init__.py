"""Drive the walrust CLI from Python.

walrust replicates SQLite databases (WAL mode) to object storage, Litestream v0.5 compatible.
This package does no replication itself: every call runs the ``walrust`` program (found on PATH,
or the bundle/argv given as ``executable``) with ``--json`` and returns its parsed output.

    from walrust import Walrust
    w = Walrust("file:///var/backups/walrust")
    with w.watch("/var/lib/app/app.db", wal_sync_interval=0.5):
        ...                                  # the app writes; walrust replicates
    w.restore("app.db", "/tmp/app-restored.db")
"""

from .client import Walrust, format_time
from .errors import (
    EXIT_CONFIG,
    EXIT_DATABASE,
    EXIT_GENERAL,
    EXIT_INTEGRITY,
    EXIT_NAMES,
    EXIT_OK,
    EXIT_RESTORE,
    EXIT_STORAGE,
    WalrustError,
    WalrustTimeoutError,
)
from .watch import WatchHandle

__version__ = "0.1.0"

__all__ = [
    "Walrust",
    "WatchHandle",
    "WalrustError",
    "WalrustTimeoutError",
    "format_time",
    "EXIT_OK",
    "EXIT_GENERAL",
    "EXIT_CONFIG",
    "EXIT_DATABASE",
    "EXIT_STORAGE",
    "EXIT_INTEGRITY",
    "EXIT_RESTORE",
    "EXIT_NAMES",
    "__version__",
]
