"""The one place that encrypts and decrypts (Fernet / MultiFernet).

``DOCE_ENCRYPTION_KEYS`` is a comma-separated list of Fernet keys: the first encrypts,
all of them decrypt, so keys can be rotated by putting a new key first.
"""

from __future__ import annotations

import base64
import binascii
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

_UNDECRYPTABLE = "cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?"
# A Fernet token is url-safe base64 of: version 0x80, 8-byte timestamp, 16-byte IV, at
# least one 16-byte AES block and a 32-byte HMAC, so at least 73 bytes (100 characters).
_MIN_TOKEN_LENGTH = 100


class KeyringError(ValueError):
    """The configured keys are missing or malformed."""


class UndecryptableError(Exception):
    """No configured key can decrypt a value (was DOCE_ENCRYPTION_KEYS changed?)."""


def generate_key() -> str:
    return Fernet.generate_key().decode()


def parse_keys(raw: str) -> list[str]:
    """Split and validate a DOCE_ENCRYPTION_KEYS value; raise KeyringError with the reason."""
    keys = [part.strip() for part in (raw or "").split(",") if part.strip()]
    if not keys:
        raise KeyringError("DOCE_ENCRYPTION_KEYS is empty.")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise KeyringError(
                f"DOCE_ENCRYPTION_KEYS: key #{position} is not a Fernet key (it must be 32 "
                "url-safe base64-encoded bytes, 44 characters)."
            ) from None
    return keys


@functools.lru_cache(maxsize=8)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


@functools.lru_cache(maxsize=8)
def _fernet(key: str) -> Fernet:
    return Fernet(key)


def _configured() -> MultiFernet:
    return _multifernet(tuple(settings.DOCE_ENCRYPTION_KEYS))


def _current() -> Fernet:
    return _fernet(settings.DOCE_ENCRYPTION_KEYS[0])


def encrypt(plaintext: str) -> str:
    return _configured().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _configured().decrypt(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableError(_UNDECRYPTABLE) from None


def rotate(token: str) -> str:
    """Re-encrypt ``token`` with the first key (raises UndecryptableError)."""
    try:
        return _configured().rotate(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableError(_UNDECRYPTABLE) from None


def is_current(token: str) -> bool:
    """True when ``token`` was encrypted with the first (current) key."""
    try:
        _current().decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def rotate_if_stale(token: str) -> str | None:
    """The token re-encrypted with the first key, or None when it already uses that key.

    One pass for key rotation: a token on the current key costs one decryption, a stale
    one a decryption with each key tried plus one encryption. Raises UndecryptableError.
    """
    try:
        _current().decrypt(token.encode())
    except InvalidToken:
        return rotate(token)
    return None


def looks_encrypted(value: str) -> bool:
    """True when ``value`` has the shape of a Fernet token (whatever key made it).

    Tells a stored ciphertext that no configured key opens apart from a plaintext value
    (a legacy key restored from an old backup), which is safe to encrypt.
    """
    if len(value) < _MIN_TOKEN_LENGTH or not value.startswith("gAAAAA"):
        return False
    try:
        raw = base64.urlsafe_b64decode(value.encode())
    except (binascii.Error, ValueError):
        return False
    return raw[0] == 0x80 and (len(raw) - 57) % 16 == 0
