"""Encryption of spooled event bodies at rest (encryption_key, AES-GCM)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from conftest import offline_client

import sentinel_durable as sentinel
from sentinel_durable.cli import main
from sentinel_durable.spool import read_dead_letters, spool_files
from sentinel_durable.testing import EmbeddedBroker, wait_until

KEY = base64.b64encode(os.urandom(32)).decode()
OTHER_KEY = os.urandom(32).hex()
SECRET_PROMPT = "my card number is 4111 1111 1111 1111"


def spool_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())


def test_prompts_are_unreadable_on_disk_and_delivered_intact(tmp_path: Path) -> None:
    client = offline_client(tmp_path, "enc", encryption_key=KEY)
    event_id = client.track(service="svc", model="m", prompt=SECRET_PROMPT, response="ok", latency_ms=1)
    client.close(timeout=0)
    on_disk = spool_bytes(tmp_path)
    assert SECRET_PROMPT.encode() not in on_disk
    assert b"SDE1" in on_disk
    with EmbeddedBroker() as broker:
        with sentinel.Client(brokers=[broker.bootstrap_servers], topic="enc", spool_dir=tmp_path,
                             encryption_key=KEY) as reader:  # fmt: skip
            assert reader.flush(timeout=30)
        (record,) = broker.read_topic("enc", expected=1)
    document = json.loads(record.value)
    assert (document["event_id"], document["prompt"]["text"]) == (event_id, SECRET_PROMPT)


@pytest.mark.parametrize("key", [OTHER_KEY, None], ids=["other-key", "no-key"])
def test_a_wrong_or_missing_key_dead_letters_instead_of_sending_ciphertext(tmp_path: Path, key: str | None) -> None:
    client = offline_client(tmp_path, "enc", encryption_key=KEY)
    client.track(service="svc", model="m", prompt=SECRET_PROMPT, response="ok", latency_ms=1)
    client.close(timeout=0)
    with EmbeddedBroker() as broker:
        reader = sentinel.Client(
            brokers=[broker.bootstrap_servers], topic="enc", spool_dir=tmp_path, encryption_key=key
        )
        wait_until(lambda: reader.stats().dead_letters == 1, 30, description="the dead letter")
        reader.close()
        assert broker.read_topic("enc") == []
    (letter,) = [letter for path in spool_files(tmp_path) for letter in read_dead_letters(path)]
    assert "encryption_key" in letter.last_error


def test_export_decrypts_with_the_key_and_explains_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = offline_client(tmp_path, "enc", encryption_key=KEY)
    client.track(service="svc", model="m", prompt=SECRET_PROMPT, response="ok", latency_ms=1)
    client.close(timeout=0)
    output = tmp_path.parent / "out.jsonl"
    assert main(["export", "--spool-dir", str(tmp_path), "--output", str(output)]) == 1
    assert "SENTINEL_ENCRYPTION_KEY" in capsys.readouterr().err
    monkeypatch.setenv("SENTINEL_ENCRYPTION_KEY", KEY)
    assert main(["export", "--spool-dir", str(tmp_path), "--output", str(output)]) == 0
    assert json.loads(output.read_text())["prompt"]["text"] == SECRET_PROMPT


def test_bad_key_is_a_config_error_that_hides_the_key() -> None:
    with pytest.raises(sentinel.ConfigError) as caught:
        sentinel.Config(encryption_key="not-a-key")
    assert caught.value.name == "encryption_key"
    assert "not-a-key" not in str(caught.value)
    assert KEY not in repr(sentinel.Config(encryption_key=KEY))
