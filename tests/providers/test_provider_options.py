"""Provider options (providers.options): the rules for each value, how a connection's
options become OpenCode's config (providers.credentials.opencode_provider_config), and
how the files in a server's home are written (doce.opencode.runtimes.config)."""

from __future__ import annotations

import json
import os
import secrets
import stat

import pytest
from django.core.exceptions import ValidationError

from doce.opencode import ProviderConfig
from doce.opencode.runtimes import CustomProvider, ServerSpec
from doce.opencode.runtimes.config import (
    HEADERS_DIR,
    render_opencode_config,
    write_opencode_config,
    write_provider_files,
)
from doce.opencode.types import AWS_CREDENTIALS_FILE, GOOGLE_CREDENTIALS_FILE
from providers import services
from providers.credentials import (
    CredentialUnavailable,
    credential_for,
    opencode_provider_config,
    provider_config_for,
)
from providers.models import ProviderConnection
from providers.options import AZURE, BEDROCK, CUSTOM_HEADERS, VERTEX, clean_options
from tests.providers.conftest import raw_connection_value

ACCESS_KEY_ID = "AKIA" + secrets.token_hex(8).upper()
SECRET_ACCESS_KEY = secrets.token_urlsafe(30).replace("-", "+").replace("_", "/")[:40]


def service_account(**overrides) -> str:
    data = {
        "type": "service_account",
        "project_id": "my-project-123",
        "private_key_id": "abc",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB" + secrets.token_hex(16) + "\n-----END "
        "PRIVATE KEY-----\n",
        "client_email": "doce@my-project-123.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    data.update(overrides)
    return json.dumps(data)


def errors_of(entry, values, **kwargs) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        clean_options(entry, values, **kwargs)
    return info.value.message_dict


# --- the rules ----------------------------------------------------------------------------


def test_azure_needs_a_plain_resource_name():
    assert clean_options(AZURE, {"resourceName": " my-models "}) == (
        {"resourceName": "my-models"},
        {},
    )
    assert "needed" in errors_of(AZURE, {"resourceName": ""})["resourceName"][0]
    for bad in ("my models", "-x", "a" * 65, "x{file:~/.aws/credentials}", "naïve"):
        assert "resourceName" in errors_of(AZURE, {"resourceName": bad}), bad
    assert "ASCII" in errors_of(AZURE, {"resourceName": "résumé"})["resourceName"][0]


def test_bedrock_takes_a_key_or_both_access_keys():
    options, secret = clean_options(
        BEDROCK,
        {"region": "eu-west-3", "accessKeyId": ACCESS_KEY_ID, "secretAccessKey": SECRET_ACCESS_KEY},
    )
    assert options == {"region": "eu-west-3"}
    assert secret == {"accessKeyId": ACCESS_KEY_ID, "secretAccessKey": SECRET_ACCESS_KEY}
    assert clean_options(BEDROCK, {"region": "us-gov-west-1"}, has_api_key=True)[0] == {
        "region": "us-gov-west-1"
    }
    assert "accessKeyId" in errors_of(BEDROCK, {"region": "us-east-1"})  # neither
    assert "secretAccessKey" in errors_of(BEDROCK, {"accessKeyId": ACCESS_KEY_ID})
    assert "region" in errors_of(BEDROCK, {"region": "Europe"}, has_api_key=True)
    assert "accessKeyId" in errors_of(
        BEDROCK, {"accessKeyId": "akia lower", "secretAccessKey": SECRET_ACCESS_KEY}
    )
    bad_secret = {"accessKeyId": ACCESS_KEY_ID, "secretAccessKey": "x\ny" * 10}
    assert "secretAccessKey" in errors_of(BEDROCK, bad_secret)


def test_an_empty_secret_keeps_the_stored_one_on_an_edit():
    stored = {"accessKeyId": ACCESS_KEY_ID, "secretAccessKey": SECRET_ACCESS_KEY}
    options, secret = clean_options(
        BEDROCK,
        {"region": "us-west-2"},
        stored_options={"region": "eu-west-1"},
        stored_secrets=stored,
    )
    assert options == {"region": "us-west-2"} and secret == stored


def test_vertex_needs_a_project_and_a_service_account_key():
    options, secret = clean_options(
        VERTEX, {"project": "my-project-123", "serviceAccount": service_account()}
    )
    assert options == {"project": "my-project-123"}
    assert json.loads(secret["serviceAccount"])["type"] == "service_account"
    assert set(errors_of(VERTEX, {})) == {"project", "serviceAccount"}
    problems = {
        "not json": "not JSON",
        "[1, 2]": "not a service-account key",
        service_account(type="authorized_user"): "not a service-account key",
        service_account(private_key=""): "private_key",
        service_account(client_email="é@example.com").replace("\\u00e9", "é"): "ASCII",
        service_account(pad="x" * 70_000): "At most 65536 characters",
    }
    for text, message in problems.items():
        found = errors_of(VERTEX, {"project": "my-project-123", "serviceAccount": text})
        assert message in found["serviceAccount"][0], (text[:30], found)
    assert "location" in errors_of(
        VERTEX, {"project": "my-project-123", "location": "us central", "serviceAccount": "x"}
    )


def test_headers_follow_the_http_rules():
    headers = clean_options(CUSTOM_HEADERS, {"headers": "X-Org: 12\n\n  X-Token : a b \n"})[1]
    assert headers == {"headers": {"X-Org": "12", "X-Token": "a b"}}
    bad = {
        "X Org: 1": "header name",
        "X-Org 1": "Name: value",
        "X-Org: caf\u00e9": "ASCII",
        "X-Org: a\x07": "control",
        "Host: evil": "HTTP client",
        "X-Org: 1\nx-org: 2": "twice",
        "X-Org:": "no value",
        "X-Org: " + "a" * 2049: "over 2048",
        "\n".join(f"X-H{n}: v" for n in range(21)): "At most 20",
    }
    for text, message in bad.items():
        found = errors_of(CUSTOM_HEADERS, {"headers": text})["headers"][0]
        assert message in found, (text[:30], found)
    # A CR or LF ends a line, so it can never be inside a value.
    split = clean_options(CUSTOM_HEADERS, {"headers": "X-Org: a\rX-Other: b\r\n"})[1]
    assert split == {"headers": {"X-Org": "a", "X-Other": "b"}}


def test_a_header_name_alone_keeps_its_stored_value_and_a_left_out_one_goes():
    stored = {"headers": {"X-Token": "secret-1", "X-Org": "12"}}
    _, secret = clean_options(
        CUSTOM_HEADERS, {"headers": "x-token:\nX-New: 3"}, stored_secrets=stored
    )
    assert secret == {"headers": {"x-token": "secret-1", "X-New": "3"}}


# --- a connection as OpenCode's config ----------------------------------------------------


@pytest.mark.django_db
def test_each_provider_maps_to_what_opencode_reads(alice):
    azure = services.connection_create(
        user=alice, provider_id="azure", api_key="az-" + "k" * 20, options={"resourceName": "res1"}
    )
    assert opencode_provider_config(azure) == ProviderConfig("azure", {"resourceName": "res1"})

    bedrock = services.connection_create(
        user=alice,
        provider_id="amazon-bedrock",
        options={"region": "eu-west-3"},
        secret_options={"accessKeyId": ACCESS_KEY_ID, "secretAccessKey": SECRET_ACCESS_KEY},
    )
    config = opencode_provider_config(bedrock)
    assert config.options == {"region": "eu-west-3", "profile": "doce"}
    assert config.files == {
        AWS_CREDENTIALS_FILE: f"[doce]\naws_access_key_id = {ACCESS_KEY_ID}\n"
        f"aws_secret_access_key = {SECRET_ACCESS_KEY}\n"
    }
    assert SECRET_ACCESS_KEY not in repr(config)

    vertex = services.connection_create(
        user=alice,
        provider_id="google-vertex",
        options={"project": "my-project-123", "location": "europe-west4"},
        secret_options={"serviceAccount": service_account()},
    )
    config = opencode_provider_config(vertex)
    assert config.options == {"project": "my-project-123", "location": "europe-west4"}
    assert json.loads(config.files[GOOGLE_CREDENTIALS_FILE])["type"] == "service_account"

    endpoint = services.connection_create(
        user=alice,
        provider_id="gw",
        name="Gateway",
        base_url="http://127.0.0.1:1/v1",
        models=["m"],
        secret_options={"headers": {"X-Org": "12"}},
    )
    assert opencode_provider_config(endpoint).headers == {"X-Org": "12"}


@pytest.mark.django_db
def test_secret_options_are_encrypted_at_rest(alice):
    connection = services.connection_create(
        user=alice,
        provider_id="amazon-bedrock",
        secret_options={"accessKeyId": ACCESS_KEY_ID, "secretAccessKey": SECRET_ACCESS_KEY},
    )
    raw = raw_connection_value(connection.pk, "secret_options")
    assert raw and SECRET_ACCESS_KEY not in raw and ACCESS_KEY_ID not in raw
    assert ProviderConnection.objects.get(pk=connection.pk).secret_option_values == {
        "accessKeyId": ACCESS_KEY_ID,
        "secretAccessKey": SECRET_ACCESS_KEY,
    }


@pytest.mark.django_db
def test_the_services_refuse_options_the_table_does_not_allow(alice):
    with pytest.raises(ValidationError) as info:
        services.connection_create(
            user=alice, provider_id="azure", api_key="k" * 20, options={"baseURL": "http://x"}
        )
    assert "baseURL" in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        services.connection_create(
            user=alice,
            provider_id="google-vertex",
            options={"project": "My Project"},
            secret_options={"serviceAccount": service_account()},
        )
    assert "project" in info.value.message_dict
    with pytest.raises(ValidationError):  # a secret given as a plain option
        services.connection_create(
            user=alice, provider_id="amazon-bedrock", options={"secretAccessKey": "x" * 40}
        )
    assert not ProviderConnection.objects.exists()


@pytest.mark.django_db
def test_a_provider_whose_options_carry_the_credential_has_nothing_to_inject(alice):
    services.connection_create(
        user=alice,
        provider_id="google-vertex",
        options={"project": "my-project-123"},
        secret_options={"serviceAccount": service_account()},
    )
    with pytest.raises(CredentialUnavailable) as info:
        credential_for(user=alice, provider_id="google-vertex")
    assert info.value.reason == CredentialUnavailable.KEYLESS_ENDPOINT
    assert provider_config_for(user=alice, provider_id="google-vertex") is not None
    # Without a service account, Bedrock without a key is incomplete, not keyless.
    services.connection_create(user=alice, provider_id="amazon-bedrock", api_key="b" * 30)
    ProviderConnection.objects.filter(provider_id="amazon-bedrock").update(api_key=None)
    with pytest.raises(CredentialUnavailable) as info:
        credential_for(user=alice, provider_id="amazon-bedrock")
    assert info.value.reason == "incomplete"


@pytest.mark.django_db
def test_a_revoked_connection_gives_no_config(alice):
    connection = services.connection_create(
        user=alice, provider_id="azure", api_key="k" * 20, options={"resourceName": "res1"}
    )
    services.connection_revoke(connection=connection)
    assert provider_config_for(user=alice, provider_id="azure") is None
    assert provider_config_for(user=alice, provider_id="openai") is None


# --- the files a server's config refers to ------------------------------------------------


def spec_with(tmp_path, *configs: ProviderConfig, custom=()) -> ServerSpec:
    spec = ServerSpec(
        name="p1",
        data_dir=tmp_path / "p1",
        model="azure/gpt-5.4",
        password="pw",
        custom_providers=custom,
        provider_configs=configs,
    )
    spec.layout.prepare()
    return spec


def test_options_go_into_opencode_json_and_secrets_into_the_home(tmp_path, settings):
    settings.DOCE_OPENCODE_CONFIG = ""
    gateway = CustomProvider("gw", "Gateway", "http://127.0.0.1:1/v1", ["m"])
    spec = spec_with(
        tmp_path,
        ProviderConfig("azure", {"resourceName": "res1"}),
        ProviderConfig("gw", {}, headers={"X-Org": "12", "X-Token": "tok-secret"}),
        ProviderConfig(
            "amazon-bedrock", {"region": "eu-west-3"}, files={AWS_CREDENTIALS_FILE: "[doce]\n"}
        ),
        custom=(gateway,),
    )
    path = write_opencode_config(spec)
    text = path.read_text()
    config = json.loads(text)
    assert "tok-secret" not in text
    assert config["provider"]["azure"] == {"options": {"resourceName": "res1"}}
    assert config["provider"]["gw"]["options"] == {
        "baseURL": "http://127.0.0.1:1/v1",
        "headers": {
            "X-Org": "{file:~/" + HEADERS_DIR + "/gw.0}",
            "X-Token": "{file:~/" + HEADERS_DIR + "/gw.1}",
        },
    }
    home = spec.layout.home
    assert (home / HEADERS_DIR / "gw.1").read_text() == "tok-secret\n"
    for written in (home / HEADERS_DIR / "gw.0", home / AWS_CREDENTIALS_FILE):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / ".aws").stat().st_mode) == 0o700

    # The next write has no secrets: everything an earlier one left is gone.
    write_opencode_config(spec_with(tmp_path, ProviderConfig("azure", {"resourceName": "r"})))
    assert not (home / AWS_CREDENTIALS_FILE).exists()
    assert list((home / HEADERS_DIR).iterdir()) == []


def test_an_api_key_in_options_is_still_removed(tmp_path):
    spec = spec_with(tmp_path, ProviderConfig("azure", {"resourceName": "r", "apiKey": "k"}))
    assert render_opencode_config(spec)["provider"]["azure"]["options"] == {"resourceName": "r"}


def test_a_link_the_agent_left_in_the_home_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "credentials").write_text("not doce's")
    spec = spec_with(tmp_path)
    home = spec.layout.home
    os.symlink(outside, home / ".aws")  # the agent points ~/.aws elsewhere
    (home / ".config").mkdir()
    os.symlink(outside, home / ".config" / "doce")
    write_provider_files(
        home,
        [
            ProviderConfig(
                "amazon-bedrock", files={AWS_CREDENTIALS_FILE: "[doce]\n"}, headers={"X-A": "v"}
            )
        ],
    )
    assert (outside / "credentials").read_text() == "not doce's"  # untouched
    assert sorted(p.name for p in outside.iterdir()) == ["credentials"]
    assert not (home / ".aws").is_symlink() and (home / AWS_CREDENTIALS_FILE).exists()
    assert (home / HEADERS_DIR / "amazon-bedrock.0").read_text() == "v\n"
    # Removing follows no link either.
    os.unlink(home / AWS_CREDENTIALS_FILE)
    os.symlink(outside / "credentials", home / AWS_CREDENTIALS_FILE)
    write_provider_files(home, [])
    assert (outside / "credentials").exists() and not (home / AWS_CREDENTIALS_FILE).exists()


def test_only_known_credential_files_can_be_written():
    with pytest.raises(ValueError, match="not a credential file"):
        ProviderConfig("x", files={"../../etc/passwd": "x"})


def test_docker_mounts_the_provider_files_read_only(tmp_path, settings):
    from doce.opencode.runtimes.docker import SERVICE, render_compose  # needs PyYAML here

    spec = spec_with(tmp_path, ProviderConfig("gw", {}, headers={"X-A": "v"}))
    write_provider_files(spec.layout.home, spec.provider_configs)
    service = render_compose(spec, port=1)["services"][SERVICE]
    home = settings.DOCE_OPENCODE_IMAGE_HOME
    binds = {v["target"]: v for v in service["volumes"] if v["type"] == "bind"}
    for folder in (".aws", ".config/gcloud", HEADERS_DIR):
        bind = binds[f"{home}/{folder}"]
        assert bind["read_only"] and bind["source"] == str((spec.layout.home / folder).resolve())
        assert (spec.layout.home / folder).is_dir()
