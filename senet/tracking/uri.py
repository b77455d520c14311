"""Whether a tracking URI is one senet can hand to MLflow, told in senet's own sentence.

MLflow's own refusals of a mistyped URI are paragraphs (the list of its schemes, the
retirement notice of its file store, links): cut to one line they end mid-word. This check
runs first and says what is wrong with the URI and what to write instead. Standard library
only: it runs before MLflow is imported.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from urllib.parse import urlsplit

from senet.errors import SenetError

# What senet gives MLflow: a SQLite file, a database server, a tracking server.
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mssql")
SERVER_SCHEMES = ("http", "https")
WHAT_TO_USE = "use sqlite:///PATH/mlflow.db (a local file) or http://HOST:PORT (an MLflow server)"


def check_uri_form(uri: str, label: str) -> None:
    """Refuse ``uri`` in one line unless it is sqlite:///FILE, a database URL, http(s)://HOST
    or ``databricks``. ``label`` names where it came from (e.g. "--tracking-uri X")."""
    if uri == "databricks" or uri.startswith("databricks://"):
        return  # MLflow's own profile URIs: passed through as they are
    if "://" not in uri or uri.startswith("file:"):
        raise SenetError(_path_message(uri, label))
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme in SERVER_SCHEMES:
        if not urlsplit(uri).hostname:
            raise SenetError(f"{label} names no host; use http://HOST:PORT, "
                             "e.g. http://127.0.0.1:5000")
        return
    if scheme == "sqlite":
        _check_sqlite(uri, label)
        return
    if scheme in DATABASE_SCHEMES:
        return
    close = difflib.get_close_matches(scheme, [*DATABASE_SCHEMES, *SERVER_SCHEMES], n=1)
    hint = f" (did you mean {close[0]}://?)" if close else ""
    raise SenetError(f"{label}: unknown scheme {scheme!r}{hint}; {WHAT_TO_USE}, or "
                     "postgresql://USER@HOST/DB for a database server")


def _path_message(uri: str, label: str) -> str:
    """A file path or file: URI: MLflow 3 no longer keeps runs in a folder by default."""
    path = Path(uri.removeprefix("file://").removeprefix("file:")).expanduser()
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        return (f"{label} is a file path, not a URI; for the SQLite file there use "
                f"sqlite:///{path.resolve()}")
    return (f"{label} is a folder path, and MLflow 3 keeps runs in a database, not in "
            f"folders; use sqlite:///{path.resolve() / 'mlflow.db'} (a SQLite file in that "
            "folder) or http://HOST:PORT (an MLflow server)")


def _check_sqlite(uri: str, label: str) -> None:
    database = uri.split("://", 1)[1].lstrip("/") if "://" in uri else ""
    if not database or database == ":memory:" or "mode=memory" in uri:
        # An in-memory store would vanish with the process, and workers could not see it.
        raise SenetError(f"{label} names no database file; use sqlite:///PATH/mlflow.db")
    # sqlite:///rel.db is relative, sqlite:////abs.db absolute (SQLAlchemy's convention).
    path = Path(uri.split(":///", 1)[1].split("?", 1)[0]) if ":///" in uri else None
    if path is not None and path.is_dir():
        raise SenetError(f"{label} is a folder, not a database file; use "
                         f"sqlite:///{path.resolve() / 'mlflow.db'}")
