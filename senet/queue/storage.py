"""Where the queue lives: ``open_storage`` (a journal file, SQLite, or a PostgreSQL/MySQL
server). Its URLs are parsed, redacted and re-driven by `senet.urls`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from senet.errors import SenetError, one_line
from senet.urls import (
    backend,
    connect_timeout,
    password_hint,
    redact,
    resolve_storage,
    sqlite_path,
    with_driver,
)


def open_storage(url: str | None = None, *, create: bool = True) -> Any:
    """An Optuna storage for a journal file path (default $SENET_STORAGE, else
    ./senet-queue.journal),
    sqlite:///... or postgresql://... With create=False a missing journal file is an
    error instead of a new empty queue."""
    given = url is not None
    url = resolve_storage(url)
    kind = backend(url)
    if "://" not in url:
        if not create and not Path(url).is_file():
            raise SenetError(_no_queue(url, url, given))
        return _journal_storage(url)
    if kind == "sqlite":
        path = sqlite_path(url)
        if not create and path is not None and not path.is_file():
            raise SenetError(_no_queue(url, str(path), given))
        return _sqlite_storage(url)
    if kind in ("postgresql", "postgres", "mysql"):
        return _server_storage(with_driver(url))
    raise SenetError(
        f"unsupported --storage {redact(url)!r}; use a journal file path, "
        "sqlite:///FILE or postgresql://USER@HOST/DB"
    )


def _no_queue(url: str, path: str, given: bool) -> str:
    """Why a command that reads the queue found none: only `senet queue` creates one."""
    if given:
        return (f"no queue at {path}: the file does not exist (only `senet queue` creates "
                f"one); check the --storage path, or queue a grid there first with "
                f"`senet queue GRID --storage {url}`")
    return (f"no queue at {path}: nothing has been queued in this folder yet; run "
            "`senet queue GRID` first, or give --storage")


def _journal_storage(path: str) -> Any:
    from optuna.storages import JournalStorage

    from senet.queue.journal import JournalFile

    file = Path(path)
    if not file.parent.is_dir():
        raise SenetError(f"queue storage {path}: folder {file.parent} does not exist")
    try:
        return JournalStorage(JournalFile(file))
    except OSError as exc:
        raise SenetError(f"queue storage {path}: cannot open it ({exc.strerror or exc}); "
                         "check its permissions") from None


def _sqlite_storage(url: str) -> Any:
    import sqlalchemy

    storage = _rdb(url, {"connect_args": {"timeout": 60}})
    # pysqlite opens transactions lazily, so a read followed by an update is not
    # atomic and two workers could both move one ticket WAITING -> RUNNING. Taking the
    # write lock at BEGIN makes every storage transaction serialisable.

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _no_implicit_transactions(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(storage.engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    storage.engine.dispose()  # drop pooled connections made before the hooks
    return storage


def _server_storage(url: str) -> Any:
    kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": connect_timeout()}}
    return _rdb(url, kwargs)


def _rdb(url: str, engine_kwargs: dict[str, Any]) -> Any:
    from optuna.storages import RDBStorage

    try:
        return RDBStorage(url, engine_kwargs=engine_kwargs)
    except ImportError as exc:
        raise SenetError(f"queue storage {redact(url)}: missing database driver ({exc})") from None
    except Exception as exc:
        raise SenetError(f"cannot open queue storage {redact(url)}: "
                         f"{password_hint(url, one_line(exc))}") from None
