"""Instance passwords sealed at rest: encrypted with a key kept outside the database, bound to their instance.

The conductor seals an instance's password the moment the provider hands it over, so workflow step results,
state events (and their queue archives) and ``control.instances.connection`` only ever hold
``password_sealed``; the control plane opens it in memory when it returns the instance to a member or admin.

A :class:`Sealer` is anything with ``seal(plaintext, context)`` and ``open(sealed, context)``. ``context`` is
the instance id: it is bound to the ciphertext (AES-GCM associated data), so a sealed password copied to
another instance's row does not open there. The default, :func:`default_sealer`, is AES-256-GCM with a
32-byte key from ``$HOWDAH_SECRETS_KEY`` (base64), or else from the file ``secrets.key`` in Howdah's home,
created on first use (mode 0600, never overwritten). A key-management service plugs in as another
:class:`Sealer` (one whose ``seal`` asks the KMS to encrypt with ``context`` as its encryption context), passed
to ``Conductor(sealer=…)`` and ``create_app(sealer=…)``; both sides must use the same one.

Sealed text is ``v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``: the version names the format, the key id
(a fingerprint of the key, not the key) says which key can open it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from howdah.errors import ConfigurationError, HowdahError
from howdah.pg._settings import howdah_home

__all__ = [
    "ENV_KEY",
    "KEY_FILE",
    "AesGcmSealer",
    "KeyFileSealer",
    "Sealer",
    "SecretUnavailable",
    "default_sealer",
    "open_connection",
    "seal_connection",
]

ENV_KEY = "HOWDAH_SECRETS_KEY"  # base64 of 32 random bytes: the key, when it is not kept in Howdah's home
KEY_FILE = "secrets.key"
VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
PLAIN, SEALED = "password", "password_sealed"  # the connection fields


class SecretUnavailable(HowdahError):
    """A sealed value cannot be opened here: sealed with another key, bound to another instance, or altered."""


@runtime_checkable
class Sealer(Protocol):
    """Encrypts short secrets for storage; ``context`` (the instance id) must be the same to open as to seal."""

    def seal(self, plaintext: str, context: str) -> str: ...

    def open(self, sealed: str, context: str) -> str:
        """The plaintext, or :class:`SecretUnavailable`."""
        ...


def key_id(key: bytes) -> str:
    """A short fingerprint that names a key without revealing it."""
    return hashlib.sha256(b"howdah-sealing-key:" + key).hexdigest()[:16]


class AesGcmSealer:
    """AES-256-GCM with one key; the version, key id and context are the associated data."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigurationError(f"a sealing key has {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = key_id(key)

    def _associated(self, context: str) -> bytes:
        return f"{VERSION}:{self.key_id}:{context}".encode()

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        box = nonce + self._aead.encrypt(nonce, plaintext.encode(), self._associated(context))
        return f"{VERSION}:{self.key_id}:{base64.urlsafe_b64encode(box).decode()}"

    def open(self, sealed: str, context: str) -> str:
        version, _, rest = sealed.partition(":")
        kid, _, body = rest.partition(":")
        if version != VERSION or not kid or not body:
            raise SecretUnavailable(f"not a sealed value of format {VERSION}")
        if kid != self.key_id:
            raise SecretUnavailable(f"sealed with key {kid}; this process has key {self.key_id}")
        try:
            box = base64.urlsafe_b64decode(body.encode())
            plain = self._aead.decrypt(box[:NONCE_BYTES], box[NONCE_BYTES:], self._associated(context))
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise SecretUnavailable("the sealed value does not open for this instance (moved or altered)") from exc
        return plain.decode()


def decode_key(text: str, source: str) -> bytes:
    """The key written as base64 in ``text`` (from ``source``, named in the error when it is not a key)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"{source} is not base64") from exc
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"{source} must hold {KEY_BYTES} bytes in base64, not {len(key)} bytes")
    return key


def ensure_key_file(path: Path) -> bytes:
    """The key kept in ``path``; created (mode 0600) if there is none. Creation is atomic and never replaces
    a file that exists, so processes starting together all end up with the same key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first: its key wins
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return decode_key(path.read_text(), f"the sealing key file {path}")


class KeyFileSealer:
    """:class:`AesGcmSealer` with the key of ``$HOWDAH_SECRETS_KEY``, else of ``<home>/secrets.key``, read (or
    created) on first use, so that building a conductor or an API touches no file."""

    def __init__(self, home: Path | None = None) -> None:
        self._home = home
        self._sealer: AesGcmSealer | None = None
        self._lock = threading.Lock()

    def _resolved(self) -> AesGcmSealer:
        with self._lock:
            if self._sealer is None:
                value = os.environ.get(ENV_KEY, "")
                key = (
                    decode_key(value, ENV_KEY)
                    if value.strip()
                    else ensure_key_file((self._home or howdah_home()) / KEY_FILE)
                )
                self._sealer = AesGcmSealer(key)
            return self._sealer

    def seal(self, plaintext: str, context: str) -> str:
        return self._resolved().seal(plaintext, context)

    def open(self, sealed: str, context: str) -> str:
        return self._resolved().open(sealed, context)


def default_sealer(home: Path | None = None) -> Sealer:
    """The sealer of ``$HOWDAH_SECRETS_KEY`` or of the key file in ``home`` (default: Howdah's home)."""
    return KeyFileSealer(home)


def seal_connection(connection: Mapping[str, Any], sealer: Sealer, instance_id: str) -> dict[str, Any]:
    """``connection`` with its plaintext ``password`` replaced by ``password_sealed`` (already sealed: as is)."""
    out = dict(connection)
    plain = out.pop(PLAIN, None)
    if plain is not None:
        out[SEALED] = sealer.seal(str(plain), instance_id)
    return out


def open_connection(connection: Mapping[str, Any], sealer: Sealer, instance_id: str) -> dict[str, Any]:
    """``connection`` with its ``password`` in plaintext (a value stored before sealing is returned as it is);
    :class:`SecretUnavailable` when the sealed password does not open."""
    out = dict(connection)
    sealed = out.pop(SEALED, None)
    if sealed is not None:
        out[PLAIN] = sealer.open(str(sealed), instance_id)
    return out
