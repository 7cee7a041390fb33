"""The encrypted field: plaintext in Python, a Fernet token in the column, never a crash."""

from __future__ import annotations

import io
import json
import pickle

import pytest
from django import forms
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.db import connection

from doce import keyring
from doce.encrypted_fields import EncryptedTextField, Secret, Undecryptable
from providers.credentials import opencode_credential
from providers.models import ProviderConnection
from tests.factories import ProviderConnectionFactory
from tests.providers.conftest import WRONG_KEY, raw_connection_value

# A made-up key, built in two parts so it never reads like a real one in a diff.
REPLACEMENT_KEY = "sk-ant-api03-" + "replacement-key-0000"

pytestmark = pytest.mark.django_db


def test_the_column_holds_a_token_that_decrypts_to_the_value(alice):
    connection_ = ProviderConnectionFactory(user=alice)
    stored = raw_connection_value(connection_.pk, "api_key")
    assert stored != connection_.api_key
    assert keyring.looks_encrypted(stored)
    assert keyring.decrypt(stored) == connection_.api_key
    assert ProviderConnection.objects.get(pk=connection_.pk).api_key == connection_.api_key


def test_none_and_empty_are_stored_as_they_are(alice):
    connection_ = ProviderConnectionFactory(user=alice, oauth_access_token="")
    assert raw_connection_value(connection_.pk, "oauth_access_token") == ""
    assert raw_connection_value(connection_.pk, "oauth_refresh_token") is None
    fresh = ProviderConnection.objects.get(pk=connection_.pk)
    assert fresh.oauth_access_token == "" and fresh.oauth_refresh_token is None


def test_saving_an_unchanged_value_keeps_its_token_and_a_new_value_gets_a_new_one(alice):
    connection_ = ProviderConnectionFactory(user=alice)
    before = raw_connection_value(connection_.pk, "api_key")
    fresh = ProviderConnection.objects.get(pk=connection_.pk)
    fresh.save()
    assert raw_connection_value(connection_.pk, "api_key") == before
    fresh.api_key = REPLACEMENT_KEY
    fresh.save()
    after = raw_connection_value(connection_.pk, "api_key")
    assert after != before and keyring.decrypt(after) == REPLACEMENT_KEY


def test_a_decrypted_value_hides_itself_from_repr_but_serialises_as_text(alice):
    connection_ = ProviderConnection.objects.get(pk=ProviderConnectionFactory(user=alice).pk)
    secret = connection_.api_key
    assert isinstance(secret, Secret)
    assert secret not in repr(secret) and secret not in repr([secret])
    assert json.loads(json.dumps({"key": secret})) == {"key": str(secret)}
    assert pickle.loads(pickle.dumps(secret)) == secret


def test_comparing_with_a_value_is_an_error_not_an_empty_result(alice):
    ProviderConnectionFactory(user=alice)
    with pytest.raises(FieldError, match="encrypted field"):
        list(ProviderConnection.objects.filter(api_key="anything"))
    with pytest.raises(FieldError):
        list(ProviderConnection.objects.filter(api_key__icontains="sk-"))
    assert ProviderConnection.objects.filter(api_key__isnull=False).count() == 1
    assert ProviderConnection.objects.filter(oauth_access_token=None).count() == 1
    assert ProviderConnection.objects.exclude(api_key="").count() == 1


def test_an_undecryptable_value_loads_as_a_marker_and_is_written_back_untouched(alice, use_keys):
    connection_ = ProviderConnectionFactory(user=alice)
    token = raw_connection_value(connection_.pk, "api_key")
    use_keys(WRONG_KEY)

    fresh = ProviderConnection.objects.get(pk=connection_.pk)  # no exception
    assert isinstance(fresh.api_key, Undecryptable)
    assert token not in repr(fresh.api_key) and token not in str(fresh.api_key)
    assert fresh.undecryptable_fields() == ["api_key"]
    assert fresh.effective_status == "error"
    assert fresh.effective_error_message == "cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?"
    with pytest.raises(TypeError):
        json.dumps({"key": fresh.api_key})  # never sent as garbage
    with pytest.raises(keyring.UndecryptableError):
        opencode_credential(fresh).to_json()

    fresh.status = "error"
    fresh.save()
    assert raw_connection_value(connection_.pk, "api_key") == token


def test_plaintext_found_in_an_encrypted_column_is_read_and_encrypted_at_next_save(alice):
    connection_ = ProviderConnectionFactory(user=alice)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE provider_connections SET api_key = %s WHERE id = %s",
            ["sk-restored-plaintext-0001", connection_.pk],
        )
    fresh = ProviderConnection.objects.get(pk=connection_.pk)
    assert fresh.api_key == "sk-restored-plaintext-0001"
    fresh.save()
    assert keyring.decrypt(raw_connection_value(connection_.pk, "api_key")) == (
        "sk-restored-plaintext-0001"
    )


def test_dumpdata_writes_tokens_and_loaddata_reads_them_back(alice, tmp_path):
    connection_ = ProviderConnectionFactory(user=alice)
    out = io.StringIO()
    call_command("dumpdata", "providers.providerconnection", stdout=out)
    assert connection_.api_key not in out.getvalue()
    assert raw_connection_value(connection_.pk, "api_key") in out.getvalue()

    ProviderConnection.objects.all().delete()
    fixture = tmp_path / "connections.json"
    fixture.write_text(out.getvalue())
    call_command("loaddata", str(fixture), verbosity=0)
    assert ProviderConnection.objects.get(pk=connection_.pk).api_key == connection_.api_key


@pytest.mark.filterwarnings("ignore:The default scheme will be changed")
def test_the_field_is_left_out_of_model_forms():
    form_class = forms.modelform_factory(ProviderConnection, fields="__all__")
    assert "api_key" not in form_class.base_fields
    assert "provider_id" in form_class.base_fields
    name, path, args, kwargs = EncryptedTextField(null=True).deconstruct()
    assert path == "doce.encrypted_fields.EncryptedTextField" and "editable" not in kwargs


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sk-ant-api03-abc", False),
        ("gAAAAA" + "A" * 94, False),  # the right prefix but not a token's length/shape
        ("", False),
    ],
)
def test_looks_encrypted_tells_plaintext_from_tokens(value, expected):
    assert keyring.looks_encrypted(value) is expected
    assert keyring.looks_encrypted(keyring.encrypt(value or "x")) is True
