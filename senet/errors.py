"""User-facing errors: one line, naming the field or file and what to do."""

from __future__ import annotations

import re


class SenetError(Exception):
    """An error the CLI prints as one line (no traceback)."""


class TrainingFailed(SenetError):
    """Training stopped for a reason worth recording (e.g. non-finite loss)."""


class TrainingStopped(SenetError):
    """The caller asked the run to stop (e.g. its queue lease was lost)."""


class Fenced(TrainingStopped):
    """This worker lost its claim on a training that another worker now owns: it stops
    and writes nothing more (no checkpoint, metric, tag, status or summary)."""


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """The root cause of ``exc`` as one line, for messages. Database drivers put the useful
    part on the first line and SQL or links after it. With ``limit``, at most that many
    characters, shortened by ``shorten`` (never cut inside a word)."""
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause).strip() or type(cause).__name__
    text = " ".join(text.splitlines()[0].split())
    return text if limit is None else shorten(text, limit)


# The operating system's own reason, as HTTP and database clients quote it deep inside
# their messages ("... Failed to establish a new connection: [Errno 111] Connection refused").
_OS_REASON = re.compile(r"\[Errno -?\d+\] [^'\"()\[\]]+")


def shorten(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters: its first words, " … ", and its end (the
    operating system's reason where the text quotes one, else its last words). Words are
    kept whole: a message cut mid-word ("log-batc") reads as a bug."""
    if len(text) <= limit:
        return text
    reasons = _OS_REASON.findall(text)
    words = text.split(" ")
    if reasons:
        tail = reasons[-1].strip()
        head_words = words
    else:
        tail_words: list[str] = []
        for word in reversed(words):
            if len(" ".join([word, *tail_words])) > limit // 3:
                break
            tail_words.insert(0, word)
        tail = " ".join(tail_words)
        head_words = words[: len(words) - len(tail_words)]
    head: list[str] = []
    room = limit - len(tail) - len(" … ")
    for word in head_words:
        if len(" ".join([*head, word])) > room:
            break
        head.append(word)
    return f"{' '.join(head)} … {tail}"


def caused_by(exc: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]
              ) -> bool:
    """Whether ``exc`` or anything in its chain (causes, and the errors being handled when
    each was raised) is one of ``kinds``: libraries wrap a driver's error in their own."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kinds):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def first_sentence(exc: BaseException, limit: int = 200) -> str:
    """The first sentence of ``exc``'s root cause: a library's paragraph-long message (a list
    of schemes, a migration notice, links) quoted in one of senet's own lines. A sentence
    longer than ``limit`` is shortened between words, keeping the operating system's reason
    (an HTTP client's "Max retries exceeded ... [Errno 111] Connection refused")."""
    text = one_line(exc)
    end = text.find(". ")
    return shorten(text if end < 0 else text[: end + 1], limit)


class TicketFinished(Exception):
    """A queue ticket was already finished (e.g. reaped) when this worker wrote to it.
    Internal: workers catch it; it never reaches the user."""
