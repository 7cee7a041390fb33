import pytest
from cryptography.fernet import Fernet

from doce import keyring


def test_round_trip_and_ciphertext_differs(settings):
    token = keyring.encrypt("sk-secret-value")
    assert token != "sk-secret-value" and token.startswith("gAAAAA")
    assert keyring.decrypt(token) == "sk-secret-value"
    assert keyring.encrypt("sk-secret-value") != token  # random IV


def test_first_key_encrypts_all_keys_decrypt(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.DOCE_ENCRYPTION_KEYS = [old]
    legacy = keyring.encrypt("value")
    settings.DOCE_ENCRYPTION_KEYS = [new, old]
    assert keyring.decrypt(legacy) == "value"
    assert not keyring.is_current(legacy)
    rotated = keyring.rotate(legacy)
    assert keyring.is_current(rotated)
    settings.DOCE_ENCRYPTION_KEYS = [new]
    assert keyring.decrypt(rotated) == "value"
    with pytest.raises(keyring.UndecryptableError, match="DOCE_ENCRYPTION_KEYS changed"):
        keyring.decrypt(legacy)


def test_garbage_is_undecryptable_not_a_crash():
    with pytest.raises(keyring.UndecryptableError):
        keyring.decrypt("not a token")


@pytest.mark.parametrize(
    "raw",
    ["", " , ", "abc", Fernet.generate_key().decode() + ",xyz"],
    ids=["empty", "commas", "short", "valid-then-junk"],  # stable across xdist workers
)
def test_malformed_key_lists_are_refused(raw):
    with pytest.raises(keyring.KeyringError):
        keyring.parse_keys(raw)


def test_key_lists_are_trimmed():
    key = Fernet.generate_key().decode()
    assert keyring.parse_keys(f" {key} ,") == [key]
