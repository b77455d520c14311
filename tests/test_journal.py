"""Issue 23, section 2: a damaged queue journal is one line naming the file and the line,
a torn last record is removed (and said) before anything is appended, and the journal is
created owner-only. The first test pins down what the installed Optuna does on its own,
which is why senet reads and writes the file itself (senet/queue/journal.py)."""

from __future__ import annotations

import json
import stat

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection

from senet.cli import main as cli_main
from senet.errors import SenetError
from senet.queue.journal import TORN_SUFFIX
from senet.queue.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study_with_trials(path, n: int = 3) -> int:
    storage = open_storage(str(path))
    study = storage.create_new_study([StudyDirection.MINIMIZE], "g")
    for _ in range(n):
        storage.create_new_trial(study)
    return study


def _trials(path) -> int:
    storage = open_storage(str(path))
    return len(storage.get_all_trials(storage.get_study_id_from_name("g")))


def test_optuna_alone_skips_a_torn_record_then_glues_the_next_append_onto_it(tmp_path):
    """What optuna's own JournalFileBackend does (5.1): why senet does not rely on it."""
    path = tmp_path / "q.journal"
    study = _study_with_trials(path)
    path.write_bytes(path.read_bytes()[:-20])  # the last trial's record torn
    storage = JournalStorage(JournalFileBackend(str(path)))
    assert len(storage.get_all_trials(study)) == 2  # the torn record is skipped...
    with pytest.raises(Exception):  # noqa: B017 - ...but appending after it breaks (5.1:
        storage.create_new_trial(study)  # AttributeError), and the merged line is garbage
    with pytest.raises(json.JSONDecodeError):
        storage.create_new_trial(study)


def test_a_torn_last_record_is_removed_before_the_next_append_and_said(tmp_path, capsys):
    path = tmp_path / "q.journal"
    _study_with_trials(path)
    whole = path.read_bytes()
    torn = whole[:-20]
    kept = torn[: torn.rfind(b"\n") + 1]  # every line before the torn one
    path.write_bytes(torn)
    storage = open_storage(str(path))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "line 4" in err[0] and "cut short" in err[0]
    assert path.read_bytes() == kept
    assert (tmp_path / f"q.journal{TORN_SUFFIX}").read_bytes() == torn[len(kept):] + b"\n"
    study = storage.get_study_id_from_name("g")
    storage.create_new_trial(study)
    assert _trials(path) == 3  # two kept, one new: every record whole again
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_a_damaged_record_is_one_line_naming_the_file_and_the_line(tmp_path):
    path = tmp_path / "q.journal"
    _study_with_trials(path)
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2][:15] + lines[3]  # a torn record that something appended to
    del lines[3]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(SenetError) as err:
        open_storage(str(path))
    message = str(err.value)
    assert "\n" not in message
    assert f"queue journal {path} is damaged at line 3 of 3" in message
    assert f"head -n 2 {path}.damaged > {path}" in message


@pytest.mark.parametrize("command", [["status"], ["queue", "GRID"], ["plan", "GRID"],
                                     ["work", "--devices", "cpu"]])
def test_every_command_on_a_damaged_journal_says_one_line(tmp_path, monkeypatch, capsys,
                                                          command):
    grid = tmp_path / "g.toml"
    grid.write_text('dataset = "builtin"\npreset = "fast"\nmodel = "resnet20"\nepochs = 1\n'
                    "subset = 100\nseeds = [0]\n[axes]\nlr = [0.1]\n")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "senet-queue.journal"
    _study_with_trials(path)
    lines = path.read_bytes().split(b"\n")
    lines[1] = b'{"op_code": 1, "worker'
    path.write_bytes(b"\n".join(lines))
    code = cli_main([str(grid) if a == "GRID" else a for a in command])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"queue journal {path.name} is damaged at line 2" in err[0]


def test_a_journal_that_shrinks_under_a_process_stops_it_before_it_writes(tmp_path):
    path = tmp_path / "q.journal"
    study = _study_with_trials(path)
    storage = open_storage(str(path))
    storage.get_all_trials(study)
    before = path.read_bytes()
    path.write_bytes(before[: len(before) // 2])  # someone cut it
    with pytest.raises(SenetError, match="shrank from"):
        storage.create_new_trial(study)
    assert len(path.read_bytes()) == len(before) // 2  # nothing appended


def test_the_journal_is_created_owner_only(tmp_path):
    path = tmp_path / "q.journal"
    _study_with_trials(path, 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
