"""SQLite errors that are not bugs, as the domain's DependencyUnavailable: one mapping for every local store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from ragline.errors import DependencyUnavailable

# Primary result codes of a database that is busy or out of reach, not of a wrong statement.
UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,  # "database is locked": another connection holds the write lock past busy_timeout
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_PROTOCOL,
    }
)


def is_unavailable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in UNAVAILABLE_CODES  # extended codes keep the primary in the low byte


@contextmanager
def unavailable_when_locked(what: str) -> Iterator[None]:
    """Turn "locked, busy, cannot open, disk full or failing" into DependencyUnavailable (503), as
    the AWS adapters do for a service that is down. Other errors (a wrong statement, a broken
    constraint) are bugs and pass through unchanged."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if not is_unavailable(exc):
            raise
        raise DependencyUnavailable(f"{what} is unavailable: {exc}", error="Dependency unavailable") from exc
