"""Throwaway databases on the tests' PostgreSQL server (SENET_TEST_POSTGRES_URL), and an
outage of them: connections refused and the open ones ended, as a restarting server
does, without stopping the server that other tests (and other people) use. The test role
owns what it creates, which is all PostgreSQL asks for either."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import make_url


def _admin(url: str):
    import psycopg2

    conn = psycopg2.connect(make_url(url).set(drivername="postgresql")
                            .render_as_string(hide_password=False))
    conn.autocommit = True  # CREATE / DROP DATABASE cannot run in a transaction
    return conn


def tiny_grid(**changes: object) -> str:
    """A one-point grid of seconds-long CPU trainings, as TOML; ``changes`` override keys
    (a value that is a str is written as given: TOML text)."""
    settings: dict[str, object] = {
        "title": '"pg"', "dataset": '"builtin"', "preset": '"fast"', "model": '"se_resnet20"',
        "epochs": 1, "subset": 100, "batch_size": 50, "workers": 0, "seeds": "[0]", **changes}
    return "".join(f"{k} = {v}\n" for k, v in settings.items()) + "[axes]\nreduction = [4]\n"


def url_of(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@contextmanager
def databases(url: str, *names: str) -> Iterator[list[str]]:
    """New databases (unique names starting with ``names``), dropped afterwards."""
    made = [f"{name}_{uuid.uuid4().hex[:8]}" for name in names]
    conn = _admin(url)
    with conn.cursor() as cur:
        for db in made:
            cur.execute(f'CREATE DATABASE "{db}"')
    conn.close()
    try:
        yield [url_of(url, db) for db in made]
    finally:
        conn = _admin(url)
        with conn.cursor() as cur:
            for db in made:
                cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.close()


def set_reachable(url: str, database_urls: list[str], reachable: bool) -> None:
    """Refuse (and end) or allow again every connection to these databases."""
    conn = _admin(url)
    with conn.cursor() as cur:
        for db_url in database_urls:
            db = make_url(db_url).database
            cur.execute(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS {str(reachable).lower()}')
            if not reachable:
                # Only the test role's own connections (the workers'): a superuser's
                # process in the database, such as an autovacuum worker that happens to be
                # there, cannot be ended by this role and would fail the call.
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid() "
                            "AND usename = current_user", (db,))
    conn.close()
