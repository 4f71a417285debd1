"""AES-256-GCM sealing of credentials at rest, and the parsing of the key that opens them.

This is the only module that imports `cryptography`: the rest of Kestrel sees `Sealer.seal`,
`Sealer.open` and `CryptoError`, so swapping the primitive or adding a key version touches one
file. The blob format carries a version byte for exactly that reason.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
# 96 bits is GCM's native nonce size (NIST SP 800-38D §8.2); random nonces of this size are safe
# for far more seals than a credential store will ever make with one key (2**32 per NIST).
NONCE_BYTES = 12
TAG_BYTES = 16
BLOB_VERSION = b"\x01"

_KEY_FORMS = f"must be {KEY_BYTES} bytes written as {KEY_BYTES * 2} hex characters or as base64"


class CryptoError(Exception):
    """A sealed blob does not open: wrong key, tampered bytes, or copied from another row."""


def generate_key() -> bytes:
    """A fresh random key, for the first run that has none."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """The form written into the secrets file: hex survives any editor and any shell quoting."""
    _check_key(key)
    return key.hex()


def parse_key(text: str) -> bytes:
    """Read a key given as 64 hex characters or as base64 (standard or URL-safe, any padding).

    Raises `ValueError` with a one-line reason that never contains the value: the reason ends up
    in logs and on the operator's terminal, and a key echoed there is a key leaked.
    """
    value = text.strip()
    if not value:
        raise ValueError(f"{_KEY_FORMS}, but it is empty")
    # Hex first: 64 hex characters are also valid base64 (of 48 bytes), and hex is what we write.
    if len(value) == KEY_BYTES * 2:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    try:
        standard = value.replace("-", "+").replace("_", "/").rstrip("=")
        decoded = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        # ValueError too: b64decode raises it for non-ASCII text.
        raise ValueError(f"{_KEY_FORMS}, but this value is neither") from None
    if len(decoded) != KEY_BYTES:
        raise ValueError(f"{_KEY_FORMS}, but this value decodes to {len(decoded)} bytes")
    return decoded


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError(f"an encryption key is exactly {KEY_BYTES} bytes")


class Sealer:
    """Seals and opens small secrets with one key.

    `aad` (associated data) is authenticated but not encrypted: callers pass the identity of the
    row a blob belongs to, so a blob copied into another row, or another column, fails to open
    instead of silently handing one account's credential to another.
    """

    def __init__(self, key: bytes) -> None:
        _check_key(key)
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Sealer(<key hidden>)"

    def seal(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """version (1 byte) + nonce (12) + ciphertext || tag (16), with a fresh random nonce.

        A nonce reused under one GCM key leaks the XOR of plaintexts and the authentication key,
        so it is never derived from anything but the OS random source.
        """
        nonce = os.urandom(NONCE_BYTES)
        return BLOB_VERSION + nonce + self._aead.encrypt(nonce, plaintext, BLOB_VERSION + aad)

    def open(self, blob: bytes, *, aad: bytes) -> bytes:
        """The plaintext, or `CryptoError`; the message never says more than which check failed."""
        if len(blob) < 1 + NONCE_BYTES + TAG_BYTES:
            raise CryptoError("sealed blob is too short")
        version, nonce, body = blob[:1], blob[1:1 + NONCE_BYTES], blob[1 + NONCE_BYTES:]
        if version != BLOB_VERSION:
            raise CryptoError(f"sealed blob has unknown version {version[0]}")
        try:
            # The version byte is authenticated too, so a future format cannot be passed off
            # as this one.
            return self._aead.decrypt(nonce, body, BLOB_VERSION + aad)
        except InvalidTag:
            raise CryptoError(
                "sealed blob does not open: wrong key, altered bytes, or moved from another row"
            ) from None
