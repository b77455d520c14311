"""Issue 23: messages are whole (shortened between words, never cut mid-word) and carry no
password; what senet stores keeps URLs without one."""

from __future__ import annotations

import pytest

from senet.commands.common import retry_command
from senet.errors import first_sentence, one_line, shorten
from senet.settings.config import TrainConfig
from senet.tracking.store import A_TRACKING_URI
from senet.urls import password_hint, redact, resolve_storage, without_password

# What MLflow raises when its server is gone, as issue 23's drill saw it cut ("log-batc").
SERVER_GONE = (
    "API request to http://127.0.0.1:40155/api/2.0/mlflow/runs/log-batch failed with "
    "exception HTTPConnectionPool(host='127.0.0.1', port=40155): Max retries exceeded with "
    "url: /api/2.0/mlflow/runs/log-batch (Caused by NewConnectionError('<urllib3.connection"
    ".HTTPConnection object at 0x7f3a>: Failed to establish a new connection: [Errno 111] "
    "Connection refused'))")


def test_a_long_reason_keeps_whole_words_and_the_os_reason():
    short = shorten(SERVER_GONE, 200)
    assert len(short) <= 200
    assert short.endswith(" … [Errno 111] Connection refused")
    head = short.split(" … ")[0]
    assert SERVER_GONE.startswith(head) and SERVER_GONE[len(head)] == " "  # a word boundary
    assert one_line(RuntimeError(SERVER_GONE), limit=200) == short
    assert shorten("short enough", 200) == "short enough"


def test_the_reason_a_tracking_failure_quotes_is_shortened_the_same_way():
    # The recorder's "failed while logging ... (run ID): REASON" quotes first_sentence.
    quoted = first_sentence(RuntimeError(SERVER_GONE))
    assert quoted == shorten(SERVER_GONE, 200) and len(SERVER_GONE) > 300
    assert first_sentence(RuntimeError("One sentence. Then a link.")) == "One sentence."


def test_a_reason_without_an_os_error_keeps_its_last_words():
    text = " ".join(f"word{i}" for i in range(100))
    short = shorten(text, 80)
    assert len(short) <= 80 and short.endswith("word99") and " … " in short
    assert all(part in text.split() for part in short.replace(" … ", " ").split())


URL = "postgresql+psycopg2://u:s3cret@db.example:5432/senet"


def test_urls_are_stored_without_their_password_and_shown_masked():
    assert without_password(URL) == "postgresql+psycopg2://u@db.example:5432/senet"
    assert redact(URL) == "postgresql+psycopg2://u:***@db.example:5432/senet"
    assert without_password("q.journal") == "q.journal"
    cfg = TrainConfig(model="resnet20", tracking_uri=URL)
    assert cfg.to_dict()["tracking_uri"] == "postgresql+psycopg2://u@db.example:5432/senet"
    assert cfg.tracking_uri == URL  # the process itself still connects with it


def test_retry_commands_carry_no_password():
    line = retry_command([("g", {A_TRACKING_URI: URL})], URL.replace("/senet", "/queue"))
    assert "s3cret" not in line
    assert "--storage postgresql+psycopg2://u@db.example:5432/queue" in line
    assert "--tracking-uri postgresql+psycopg2://u@db.example:5432/senet" in line


def test_a_password_less_url_that_needs_one_says_how_to_give_it():
    reason = 'connection to server failed: fe_sendauth: no password supplied'
    hint = password_hint("postgresql://u@db/senet", reason)
    assert hint.startswith(reason) and "PGPASSWORD" in hint and "~/.pgpass" in hint
    assert password_hint(URL, reason) == reason  # it had one: that one is wrong


@pytest.mark.parametrize("given, env, expected", [
    (None, None, "senet-queue.journal"), (None, "sqlite:///q.db", "sqlite:///q.db"),
    ("x.journal", "sqlite:///q.db", "x.journal")])
def test_the_storage_url_may_come_from_the_environment(monkeypatch, given, env, expected):
    if env is None:
        monkeypatch.delenv("SENET_STORAGE", raising=False)
    else:
        monkeypatch.setenv("SENET_STORAGE", env)
    assert resolve_storage(given) == expected


def test_a_worker_takes_the_password_of_the_same_store_from_the_environment(monkeypatch):
    from senet.tracking.store import password_from_env

    stored = without_password(URL)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", URL.replace("+psycopg2", ""))
    assert password_from_env(stored) == URL
    monkeypatch.setenv("MLFLOW_TRACKING_URI", URL.replace("/senet", "/other"))
    assert password_from_env(stored) == stored  # another store: not its password
