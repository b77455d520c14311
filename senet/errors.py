"""User-facing errors: one line, naming the field or file and what to do."""

from __future__ import annotations


class SenetError(Exception):
    """An error the CLI prints as one line (no traceback)."""


class TrainingFailed(SenetError):
    """Training stopped for a reason worth recording (e.g. non-finite loss)."""


class TrainingStopped(SenetError):
    """The caller asked the run to stop (e.g. its queue lease was lost)."""


class Fenced(TrainingStopped):
    """This worker lost its claim on a training that another worker now owns: it stops
    and writes nothing more (no checkpoint, metric, tag, status or summary)."""


def one_line(exc: BaseException) -> str:
    """The root cause of ``exc`` as one line, for messages. Database drivers put the useful
    part on the first line and SQL or links after it."""
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause).strip() or type(cause).__name__
    return " ".join(text.splitlines()[0].split())


def first_sentence(exc: BaseException) -> str:
    """The first sentence of ``exc``'s root cause, whole: a library's paragraph-long message
    (a list of schemes, a migration notice, links) quoted in one of senet's own lines."""
    text = one_line(exc)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


class TicketFinished(Exception):
    """A queue ticket was already finished (e.g. reaped) when this worker wrote to it.
    Internal: workers catch it; it never reaches the user."""
