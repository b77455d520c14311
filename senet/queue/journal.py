"""The queue's journal file: Optuna's journal format (one JSON record a line, appended
under a lock file), read and written here so that damage is named instead of crashing.

What Optuna 5.1's own file backend does with damage, and what this one does instead:

- A torn last record (a crash or a full disk mid-append leaves a line without its
  newline): Optuna skips it when reading, but the next append is glued onto it, and that
  merged line is a JSONDecodeError traceback for every later reader (the record glued on
  is lost, and the writer that appended it fails with an AttributeError). Here the torn
  bytes are cut off, under the journal's lock, before anything is appended; they are kept
  in ``<journal>.torn`` and one line says so. The change the torn record held never took
  effect for anyone (no reader applies a line without its newline), so dropping it loses
  nothing that was seen: a ticket claim or result it held is simply redone.
- A damaged record before the end (not JSON): one SenetError line naming the file and the
  line, and how to keep what comes before it.
- A file that shrank under a running process (cut or replaced by someone): one line,
  before anything is appended to it, instead of writing records that refer to trials the
  file no longer holds.

A journal cut exactly at a line boundary reads as an older queue; nothing in the file can
tell. Workers then redo the tickets whose results were lost: a training whose MLflow run
has finished is found there and not trained again.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optuna.storages.journal import BaseJournalBackend, JournalFileOpenLock

from senet.errors import SenetError

TORN_SUFFIX = ".torn"


class JournalFile(BaseJournalBackend):
    """Optuna's journal backend interface (``read_logs`` / ``append_logs``) over one file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            # Owner-only: the journal holds the study attributes (tracking URI, grid files).
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        # Optuna's lock file beside the journal: every process on this machine (or on a
        # shared file system with working O_EXCL) serialises its appends through it.
        self._lock = JournalFileOpenLock(str(self.path))
        self._offsets: dict[int, int] = {0: 0}  # record number -> byte offset of its line
        self._end = 0  # bytes of whole records this process has read
        if self._torn_tail() is not None:
            try:
                with self._locked():
                    self._cut_torn_tail()
            except OSError as exc:  # a reader without write access: the tail is skipped
                print(f"senet: queue journal {self.path}: its last record was cut short "
                      f"and is ignored; it cannot be removed here ({exc.strerror or exc})",
                      file=sys.stderr, flush=True)

    # -- Optuna's backend interface

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            self._check_not_shrunk(size)
            number = log_number_from if log_number_from in self._offsets else 0
            pos = self._offsets[number]
            fh.seek(pos)
            while pos < size:
                line = fh.readline(size - pos)
                if not line.endswith(b"\n"):
                    break  # being appended right now, or torn: not a record yet
                try:
                    record = json.loads(line)
                except ValueError:
                    raise self._damaged(number + 1) from None
                pos += len(line)
                number += 1
                self._offsets[number] = pos
                self._end = max(self._end, pos)
                if number > log_number_from:
                    yield record

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        with self._locked():
            self._check_not_shrunk(self.path.stat().st_size)
            self._cut_torn_tail()
            with open(self.path, "ab") as fh:
                fh.write(text.encode())
                fh.flush()
                os.fsync(fh.fileno())

    # -- damage

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def _torn_tail(self) -> tuple[int, bytes] | None:
        """(where the torn last record starts, its bytes), or None when the file ends with
        a whole line. Reads only the file's end."""
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return None
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return None
            start = size
            while start > 0:  # back to the previous newline, a block at a time
                block = min(start, 1 << 16)
                fh.seek(start - block)
                chunk = fh.read(block)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    start = start - block + cut + 1
                    break
                start -= block
            fh.seek(start)
            return start, fh.read()

    def _cut_torn_tail(self) -> None:
        """Under the lock (no append is in flight): a last line without its newline is torn."""
        torn = self._torn_tail()
        if torn is None:
            return
        start, data = torn
        line = self._line_number(start)
        kept = self.path.with_name(self.path.name + TORN_SUFFIX)
        fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as fh:
            fh.write(data + b"\n")
        os.truncate(self.path, start)
        print(f"senet: queue journal {self.path}: its last record (line {line}, {len(data)} "
              f"bytes) was cut short, as a crash or a full disk leaves it; removed it (kept "
              f"in {kept.name}); the change it held had not taken effect: workers redo a "
              "ticket's, and `senet queue` on its grid again re-adds a ticket it was queueing",
              file=sys.stderr, flush=True)

    def _line_number(self, offset: int) -> int:
        with open(self.path, "rb") as fh:
            return fh.read(offset).count(b"\n") + 1

    def _check_not_shrunk(self, size: int) -> None:
        if size < self._end:
            raise SenetError(
                f"queue journal {self.path} shrank from {self._end} to {size} bytes while this "
                "process was using it (cut or replaced by someone else); stopping before "
                "writing to it. Tickets queued in the lost part are gone: check the file, run "
                "`senet queue` on its grids again (results already in MLflow are not trained "
                "again), then start the command again")

    def _damaged(self, line: int) -> SenetError:
        with open(self.path, "rb") as fh:
            total = sum(1 for _ in fh)
        keep = line - 1
        return SenetError(
            f"queue journal {self.path} is damaged at line {line} of {total} (not a whole "
            f"record: the file was cut or overwritten there); keep the {keep} record(s) "
            f"before it with `mv {self.path} {self.path}.damaged && head -n {keep} "
            f"{self.path}.damaged > {self.path}`, then queue its grids again (`senet queue "
            "GRID` adds only what is missing) and run `senet work`: trainings already "
            "finished in MLflow are not trained again")
