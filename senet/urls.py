"""Storage and tracking URLs: parsed, redacted and re-driven with SQLAlchemy's URL type,
never by hand; the queue storage's default and environment variables; connect timeouts.

The bottom floor: the queue, the tracking store, the settings and the worker all take
their URL helpers from here (SQLAlchemy is imported only when a URL is parsed).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from senet.errors import SenetError

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
