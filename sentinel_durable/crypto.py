"""Optional encryption of spooled event bodies at rest (AES-GCM, the ``cryptography`` package).

With ``encryption_key`` set, every event is sealed before it touches the disk and opened only
in memory on its way to Kafka, so the prompts in a spool on a lost laptop cannot be read.
A sealed body is ``b"SDE1" + nonce (12 bytes) + ciphertext``; the event id is authenticated
with it (it is the associated data), so a body cannot be moved onto another row unnoticed.
JSON bodies never start with those four bytes, so a file can hold both kinds (when
encryption is turned on or off between runs).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from typing import Any

from .errors import CannotDecrypt

__all__ = ["MAGIC", "CannotDecrypt", "SpoolCipher", "is_sealed", "parse_key"]

MAGIC = b"SDE1"
_NONCE = 12


def parse_key(text: str) -> bytes:
    """A 16, 24 or 32-byte AES key written as hex or base64 (``openssl rand -base64 32``)."""
    text = text.strip()
    candidates: list[bytes] = []
    with contextlib.suppress(ValueError):
        candidates.append(bytes.fromhex(text))
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(decode(text + "=" * (-len(text) % 4)))
    for key in candidates:
        if len(key) in (16, 24, 32):
            return key
    raise ValueError("must be a 16, 24 or 32-byte key, written as hex or base64 (e.g. openssl rand -base64 32)")


def is_sealed(body: bytes) -> bool:
    return body[:4] == MAGIC


class SpoolCipher:
    def __init__(self, key: bytes) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:  # pragma: no cover - the config check names the extra first
            raise ImportError("encryption_key needs: pip install 'sentinel-durable[encryption]'") from exc
        self._aead: Any = AESGCM(key)

    def seal(self, body: bytes, event_id: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return MAGIC + nonce + bytes(self._aead.encrypt(nonce, body, event_id.encode()))

    def open(self, sealed: bytes, event_id: str) -> bytes:
        nonce, ciphertext = sealed[4 : 4 + _NONCE], sealed[4 + _NONCE :]
        try:
            return bytes(self._aead.decrypt(nonce, ciphertext, event_id.encode()))
        except Exception as exc:  # cryptography's InvalidTag: wrong key or tampered body
            raise CannotDecrypt(
                "cannot decrypt a spooled event (is encryption_key the one it was written with?)"
            ) from exc
