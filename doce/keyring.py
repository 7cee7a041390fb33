"""The one place that encrypts and decrypts (Fernet / MultiFernet).

``DOCE_ENCRYPTION_KEYS`` is a comma-separated list of Fernet keys: the first encrypts,
all of them decrypt, so keys can be rotated by putting a new key first.
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


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


def _configured() -> MultiFernet:
    from django.conf import settings

    return _multifernet(tuple(settings.DOCE_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _configured().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _configured().decrypt(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableError("cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?") from None


def rotate(token: str) -> str:
    """Re-encrypt ``token`` with the first key (raises UndecryptableError)."""
    try:
        return _configured().rotate(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableError("cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?") from None


def is_current(token: str) -> bool:
    """True when ``token`` was encrypted with the first (current) key."""
    from django.conf import settings

    try:
        Fernet(settings.DOCE_ENCRYPTION_KEYS[0]).decrypt(token.encode())
    except InvalidToken:
        return False
    return True
