"""Sealing instance passwords: AES-256-GCM bound to the instance id, with a key from the environment or a key
file created once (0600) in Howdah's home."""

from __future__ import annotations

import base64
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from howdah.control.sealing import (
    ENV_KEY,
    KEY_FILE,
    AesGcmSealer,
    Sealer,
    SecretUnavailable,
    default_sealer,
    open_connection,
    seal_connection,
)
from howdah.errors import ConfigurationError, HowdahError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CONNECTION = {"host": "127.0.0.1", "port": 5433, "user": "app", "password": "s3cret-pw", "dbname": "app"}


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)


def test_a_sealed_value_opens_for_its_instance_and_carries_version_and_key_id() -> None:
    sealer = AesGcmSealer(KEY)
    sealed = sealer.seal("s3cret-pw", "instance-a")
    assert "s3cret-pw" not in sealed
    version, kid, _ = sealed.split(":", 2)
    assert (version, kid) == ("v1", sealer.key_id)
    assert sealer.open(sealed, "instance-a") == "s3cret-pw"
    assert sealer.seal("s3cret-pw", "instance-a") != sealed  # a fresh nonce each time


def test_a_sealed_value_bound_to_one_instance_does_not_open_for_another() -> None:
    sealer = AesGcmSealer(KEY)
    sealed = sealer.seal("s3cret-pw", "instance-a")
    with pytest.raises(SecretUnavailable, match="does not open for this instance"):
        sealer.open(sealed, "instance-b")


def test_another_key_an_altered_value_or_an_unknown_format_is_a_named_error() -> None:
    sealed = AesGcmSealer(KEY).seal("s3cret-pw", "i")
    with pytest.raises(SecretUnavailable, match="sealed with key"):
        AesGcmSealer(OTHER_KEY).open(sealed, "i")
    head, body = sealed.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[-1] ^= 1
    with pytest.raises(SecretUnavailable):
        AesGcmSealer(KEY).open(f"{head}:{base64.urlsafe_b64encode(bytes(raw)).decode()}", "i")
    for junk in ("", "s3cret-pw", "v2:abc:def", "v1::", "v1:" + AesGcmSealer(KEY).key_id + ":%%%"):
        with pytest.raises(SecretUnavailable):
            AesGcmSealer(KEY).open(junk, "i")
    assert issubclass(SecretUnavailable, HowdahError)


def test_the_key_file_is_created_once_with_mode_0600_and_never_overwritten(tmp_path: Path) -> None:
    sealed = default_sealer(tmp_path).seal("s3cret-pw", "i")
    key_file = tmp_path / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    before = key_file.read_bytes()
    assert default_sealer(tmp_path).open(sealed, "i") == "s3cret-pw"  # a second process: the same key
    assert key_file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left behind


def test_sealers_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        sealed = list(pool.map(lambda i: default_sealer(tmp_path).seal("pw", "i"), range(16)))
    one = default_sealer(tmp_path)
    assert {one.open(s, "i") for s in sealed} == {"pw"}


def test_the_environment_key_wins_and_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, base64.b64encode(KEY).decode())
    sealed = default_sealer(tmp_path).seal("pw", "i")
    assert not (tmp_path / KEY_FILE).exists()
    assert AesGcmSealer(KEY).open(sealed, "i") == "pw"
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        monkeypatch.setenv(ENV_KEY, bad)
        with pytest.raises(ConfigurationError, match=ENV_KEY):
            default_sealer(tmp_path).seal("pw", "i")


def test_a_damaged_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("tiny\n")
    os.chmod(tmp_path / KEY_FILE, 0o600)
    with pytest.raises(ConfigurationError, match="sealing key file"):
        default_sealer(tmp_path).seal("pw", "i")


def test_connections_carry_only_the_sealed_password_and_open_back() -> None:
    sealer: Sealer = AesGcmSealer(KEY)
    sealed = seal_connection(CONNECTION, sealer, "i")
    assert "password" not in sealed and "s3cret-pw" not in repr(sealed)
    assert {k: v for k, v in sealed.items() if k != "password_sealed"} == {
        k: v for k, v in CONNECTION.items() if k != "password"
    }
    assert seal_connection(sealed, sealer, "i") == sealed  # sealing twice changes nothing
    assert open_connection(sealed, sealer, "i") == CONNECTION
    assert open_connection(CONNECTION, sealer, "i") == CONNECTION  # stored before sealing: as it is
    with pytest.raises(SecretUnavailable):
        open_connection(sealed, sealer, "j")
