"""One SQLite file (WAL) shared by threads: a connection per thread, writes in BEGIN IMMEDIATE
transactions, and a locked or unreachable database reported as DependencyUnavailable."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragline.adapters.local.sqlite_errors import unavailable_when_locked
from ragline.errors import Conflict


class SqliteDatabase:
    """Base of the local stores; ``what`` names the database in errors ("the metadata database")."""

    def __init__(self, path: Path, schema: str, *, what: str, busy_timeout: float = 30.0) -> None:
        self.path = path
        self.what = what
        self.busy_timeout = busy_timeout  # seconds a write waits for another connection's lock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(schema)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        return db

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection; every statement runs inside it, so a locked or unreachable
        database reaches callers as DependencyUnavailable."""
        with unavailable_when_locked(self.what):
            db = getattr(self._local, "db", None)
            if db is None:
                db = self._local.db = self._connect()
            yield db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction; a uniqueness violation is a Conflict, as in every other store."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except sqlite3.IntegrityError as exc:
                db.execute("ROLLBACK")
                raise Conflict(f"conflicts with an existing record: {exc}") from exc
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def ping(self) -> None:
        with self._connection() as db:
            db.execute("SELECT 1").fetchone()
