"""Waiting out a short outage of a worker's stores (the queue storage, the tracking store).

A database restarting for a few seconds under a worker used to end it with hundreds of
traceback lines. Now the worker says once what is down and for how long it will wait, keeps
its place (the ticket it trains stays its own: the heartbeat's grace covers the gap), and
says once when the store answers again; only an outage longer than the bound
($SENET_OUTAGE_WAIT_S, default 120 s) ends it, in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from senet.errors import SenetError, caused_by, one_line
from senet.urls import env_seconds

WAIT_ENV = "SENET_OUTAGE_WAIT_S"
DEFAULT_WAIT_S = 120.0
T = TypeVar("T")


def wait_limit() -> float:
    return env_seconds(WAIT_ENV, DEFAULT_WAIT_S)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a store that cannot be reached right now, as
    opposed to a store that answered with an error."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

    kinds: tuple[type[BaseException], ...] = (
        StorageInternalError, OperationalError, InterfaceError, DisconnectionError,
        ConnectionError, TimeoutError)
    try:  # an MLflow server that is down: requests' error is no builtin ConnectionError
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import Timeout

        kinds += (RequestsConnectionError, Timeout)
    except ImportError:
        pass
    return caused_by(exc, kinds)


class Outage:
    """One outage at a time: the first failure says what is down and how long the wait may
    be, ``over()`` says how long it lasted, a failure past the bound is one SenetError."""

    def __init__(self, say: Callable[[str], None], limit: float | None = None,
                 poll_s: float = 2.0) -> None:
        self.say = say
        self.limit = wait_limit() if limit is None else limit
        self.poll_s = poll_s
        self.since: float | None = None
        self.what = ""

    def failed(self, what: str, exc: BaseException, *, bounded: bool = True) -> None:
        """Record a failure of ``what``; raises SenetError once the outage outlasts the bound
        (unless not ``bounded``: the heartbeat's thread only reports, its grace decides)."""
        now = time.monotonic()
        if self.since is None:
            self.since, self.what = now, what
            self.say(f"{what} unreachable ({one_line(exc, limit=160)}): waiting up to "
                     f"{self.limit:.0f} s for it to answer again (${WAIT_ENV} sets the wait)")
            return
        if bounded and now - self.since > self.limit:
            raise SenetError(
                f"{what} still unreachable after {now - self.since:.0f} s "
                f"({one_line(exc, limit=160)}); this worker stops: start `senet work` again "
                "once it answers, and the point resumes from its checkpoint")

    def over(self, what: str) -> None:
        """``what`` answered: ends the outage if it was ``what``'s (the heartbeat's thread and
        the worker share one, so that one outage of one server is reported once)."""
        if self.since is not None and self.what == what:
            self.say(f"{self.what} answers again after {time.monotonic() - self.since:.0f} s; "
                     "carrying on")
            self.since = None

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, retried through an outage of ``what`` (other errors pass)."""
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self.failed(what, exc)
                time.sleep(self.poll_s)
                continue
            self.over(what)
            return result

    def wait_for(self, what: str, probe: Callable[[], Any], first: BaseException) -> None:
        """After ``first`` (a failure of ``what``), call ``probe`` until it succeeds."""
        self.failed(what, first)
        while True:
            time.sleep(self.poll_s)
            try:
                probe()
            except Exception as exc:  # noqa: BLE001 - a probe fails however the store fails
                self.failed(what, exc)
                continue
            self.over(what)
            return
