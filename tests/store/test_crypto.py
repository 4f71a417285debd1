"""Sealing and key parsing: what a blob is made of, and that every kind of mismatch refuses."""

from __future__ import annotations

import base64

import pytest

from kestrel.crypto import (
    KEY_BYTES,
    CryptoError,
    Sealer,
    encode_key,
    generate_key,
    parse_key,
)

KEY = bytes(range(32))
AAD = b"kestrel:account:1:credential"
SECRET = b'{"api_key":"sk-ant-api03-secret"}'


def test_seal_then_open_gives_back_the_plaintext() -> None:
    sealer = Sealer(KEY)
    assert sealer.open(sealer.seal(SECRET, aad=AAD), aad=AAD) == SECRET
    assert sealer.open(sealer.seal(b"", aad=b""), aad=b"") == b""


def test_blob_is_version_nonce_ciphertext_and_tag_without_the_plaintext() -> None:
    blob = Sealer(KEY).seal(SECRET, aad=AAD)
    assert blob[0] == 1
    assert len(blob) == 1 + 12 + len(SECRET) + 16
    assert b"sk-ant" not in blob


def test_every_seal_uses_a_fresh_nonce() -> None:
    sealer = Sealer(KEY)
    blobs = [sealer.seal(SECRET, aad=AAD) for _ in range(50)]
    assert len({blob[1:13] for blob in blobs}) == 50
    assert len(set(blobs)) == 50


@pytest.mark.parametrize("index", [0, 1, 12, 13, -1], ids=["version", "nonce", "nonce-end",
                                                           "ciphertext", "tag"])
def test_a_changed_byte_anywhere_does_not_open(index: int) -> None:
    sealer = Sealer(KEY)
    blob = bytearray(sealer.seal(SECRET, aad=AAD))
    blob[index] ^= 0x01
    with pytest.raises(CryptoError):
        sealer.open(bytes(blob), aad=AAD)


def test_wrong_key_does_not_open() -> None:
    blob = Sealer(KEY).seal(SECRET, aad=AAD)
    with pytest.raises(CryptoError):
        Sealer(bytes(32)).open(blob, aad=AAD)


def test_wrong_aad_does_not_open() -> None:
    sealer = Sealer(KEY)
    blob = sealer.seal(SECRET, aad=AAD)
    with pytest.raises(CryptoError):
        sealer.open(blob, aad=b"kestrel:account:2:credential")


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x01" + bytes(27)])
def test_short_blob_does_not_open(blob: bytes) -> None:
    with pytest.raises(CryptoError):
        Sealer(KEY).open(blob, aad=AAD)


def test_crypto_errors_do_not_reveal_the_plaintext() -> None:
    blob = Sealer(KEY).seal(SECRET, aad=AAD)
    with pytest.raises(CryptoError) as caught:
        Sealer(bytes(32)).open(blob, aad=AAD)
    assert "sk-ant" not in str(caught.value)


def test_sealer_refuses_a_key_of_the_wrong_size_and_hides_its_key() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Sealer(bytes(16))
    assert KEY.hex() not in repr(Sealer(KEY))


def test_generate_key_is_random_and_encode_key_round_trips() -> None:
    first, second = generate_key(), generate_key()
    assert len(first) == KEY_BYTES and first != second
    text = encode_key(first)
    assert len(text) == 64 and int(text, 16) >= 0
    assert parse_key(text) == first


# A key whose base64 contains both characters that differ between the standard and URL-safe
# alphabets, so the two forms really are different strings.
URL_KEY = bytes([0xFB, 0xFF, 0xBF] * 10 + [0xFB, 0xFF])


@pytest.mark.parametrize("text", [
    KEY.hex(),
    KEY.hex().upper(),
    base64.b64encode(KEY).decode(),
    base64.b64encode(KEY).decode().rstrip("="),
    f"  {KEY.hex()}\n",
], ids=["hex", "HEX", "base64", "base64-unpadded", "surrounding-space"])
def test_parse_key_accepts_hex_and_base64(text: str) -> None:
    assert parse_key(text) == KEY


def test_parse_key_accepts_standard_and_urlsafe_base64() -> None:
    standard = base64.b64encode(URL_KEY).decode()
    urlsafe = base64.urlsafe_b64encode(URL_KEY).decode()
    assert "+" in standard and "/" in standard and standard != urlsafe
    assert parse_key(standard) == URL_KEY
    assert parse_key(urlsafe) == URL_KEY
    assert parse_key(urlsafe.rstrip("=")) == URL_KEY


@pytest.mark.parametrize("text", [
    "ab" * 31,                                   # 62 hex characters: 31 bytes
    "ab" * 33,                                   # 66 hex characters
    base64.b64encode(b"k" * 16).decode(),        # base64 of 16 bytes
    base64.b64encode(b"k" * 33).decode(),        # base64 of 33 bytes
    "this is not a key at all!",
    "zz" * 32,                                   # 64 characters, neither hex nor 32 bytes
    "ключ-ключ-ключ",
    "   ",
])
def test_parse_key_rejects_anything_else_without_echoing_it(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_key(text)
    message = str(caught.value)
    assert "\n" not in message
    assert "32 bytes" in message
    if text.strip():
        assert text.strip() not in message
