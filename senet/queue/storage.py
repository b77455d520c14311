"""Where the queue lives: storage URLs, database drivers, connect timeouts and
``open_storage`` (a journal file, SQLite, or a PostgreSQL/MySQL server).

URLs are parsed, redacted and re-driven with SQLAlchemy's URL type, never by hand.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from senet.errors import SenetError, one_line

DEFAULT_STORAGE = "senet-queue.journal"
# A storage URL from the environment keeps a password out of the command line (and so out
# of `ps`, shell histories and the retry commands senet prints).
STORAGE_ENV = "SENET_STORAGE"
CONNECT_TIMEOUT_ENV = "SENET_CONNECT_TIMEOUT_S"
SERVER_BACKENDS = ("postgresql", "postgres", "mysql", "mssql")


def env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from environment variable ``name``."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SenetError(f"{name}={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise SenetError(f"{name}={raw!r}: expected a number of seconds > 0")
    return value


def connect_timeout() -> int:
    return int(env_seconds(CONNECT_TIMEOUT_ENV, 5.0))


def parse_url(url: str) -> Any | None:
    """SQLAlchemy's URL for ``url``, or None when it is not one (a file path)."""
    if "://" not in url:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except ArgumentError:
        return None


def backend(url: str) -> str | None:
    """``postgresql`` for postgresql+psycopg2://..., ``sqlite``, ``http``...; None for a path."""
    parsed = parse_url(url)
    return parsed.get_backend_name() if parsed is not None else None


def resolve_storage(url: str | None) -> str:
    """The queue storage to use: ``url``, else $SENET_STORAGE, else ./senet-queue.journal."""
    return url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def redact(url: str) -> str:
    """The URL with its password masked, for messages."""
    parsed = parse_url(url)
    if parsed is None or parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True)


def without_password(url: str) -> str:
    """The URL with no password at all: what senet stores (config.json, study attributes)
    and puts in the commands it prints. The database driver finds the password itself
    (PGPASSWORD, ~/.pgpass), so a stored URL still connects where those are set up."""
    from sqlalchemy.engine import URL

    parsed = parse_url(url)
    if parsed is None or parsed.password is None:
        return url
    # URL.set(password=None) keeps the password (None there means "unchanged").
    bare = URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port,
                      parsed.database, parsed.query)
    return bare.render_as_string(hide_password=False)


NO_PASSWORD_HINT = ("senet stores no passwords: give it to the driver with PGPASSWORD or "
                    "~/.pgpass, or pass the whole URL in $SENET_STORAGE / $MLFLOW_TRACKING_URI")


def password_hint(url: str, reason: str) -> str:
    """``reason`` plus how to give a password, when the server asked for one that a
    password-less URL could not give."""
    parsed = parse_url(url)
    asked = "password" in reason.lower()
    if parsed is None or parsed.password is not None or not asked:
        return reason
    return f"{reason}; {NO_PASSWORD_HINT}"


def with_driver(url: str) -> str:
    """postgresql://... -> postgresql+psycopg://... or +psycopg2, whichever is installed:
    SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3."""
    parsed = parse_url(url)
    if parsed is None or parsed.drivername not in ("postgresql", "postgres"):
        return url
    for module in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(module) is not None:
            driven = parsed.set(drivername=f"postgresql+{module}")
            return driven.render_as_string(hide_password=False)
    raise SenetError(
        f"{redact(url)}: no PostgreSQL driver; pip install psycopg2-binary (or psycopg)"
    )


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite:///FILE URL; None for other URLs or in-memory."""
    parsed = parse_url(url)
    if parsed is None or parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return None if parsed.database == ":memory:" else Path(parsed.database)


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
