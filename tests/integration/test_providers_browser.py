"""A user manages a custom provider in Chromium: adds it through the "+ Add provider"
dialog, edits its key, disconnects it (confirm dialog); and the same without JavaScript.
The key is checked against a stub endpoint (GET /v1/models) and never shows in a page."""

from __future__ import annotations

import re

import pytest

from bench.stub_llm import StubLLM
from providers.models import AuditEvent, ProviderConnection
from tests.factories import DEFAULT_PASSWORD

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FIRST_KEY = "sk-browser-first-0123456789abcdef0123"
SECOND_KEY = "sk-browser-second-fedcba9876543210fedc"


@pytest.fixture
def stub():
    with StubLLM() as server:
        yield server


def log_in(page, live_server) -> None:
    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/projects/")


def assert_no_key(page) -> None:
    html = page.content()
    assert FIRST_KEY not in html and SECOND_KEY not in html
    assert FIRST_KEY not in page.url and SECOND_KEY not in page.url


def test_add_edit_and_disconnect_a_custom_provider(page, live_server, alice, stub):
    log_in(page, live_server)
    page.get_by_role("link", name="Settings").click()
    page.wait_for_url(live_server.url + "/settings/providers/")
    assert "No provider connected yet" in page.content()

    # + Add provider: a dialog with the picker; the custom endpoint is on top.
    page.get_by_role("link", name="+ Add provider").click()
    dialog = page.locator("#provider-dialog[open]")
    dialog.wait_for()
    dialog.get_by_role("searchbox", name="Search providers").fill("open")
    dialog.locator('[data-catalog-id="groq"]').wait_for(state="detached")  # filtered as typed
    shown = dialog.locator("[data-catalog-id]").evaluate_all(
        "els => els.map(e => e.dataset.catalogId)"
    )
    assert shown == ["openrouter", "openai", "opencode"]
    dialog.get_by_role("searchbox", name="Search providers").fill("")
    dialog.get_by_role("link", name="Custom OpenAI-compatible endpoint").click()
    dialog.locator("#custom-form").wait_for()
    dialog.locator("#id_provider_id").fill("my-llm")
    dialog.locator("#id_name").fill("My LLM")
    dialog.locator("#id_base_url").fill("ftp://not-http")
    dialog.locator("#id_models").fill("stub-model")
    dialog.locator("#id_api_key").fill(FIRST_KEY)
    dialog.get_by_role("button", name="Add provider").click()
    dialog.get_by_text("Enter an http:// or https:// URL").wait_for()  # errors stay in the dialog
    assert dialog.locator("#id_api_key").input_value() == ""  # never sent back
    dialog.locator("#id_base_url").fill(stub.base_url)
    dialog.locator("#id_api_key").fill(FIRST_KEY)
    dialog.get_by_role("button", name="Add provider").click()

    row = page.locator('[data-provider-id="my-llm"]')
    row.wait_for()
    assert row.get_attribute("data-status") == "connected"
    assert "Connected My LLM." in page.content()
    assert "sk-…" in row.inner_text() or "…" in row.inner_text()
    assert_no_key(page)
    assert stub.requests[-1].path == "/v1/models"
    assert stub.requests[-1].authorization == f"Bearer {FIRST_KEY}"

    # Edit: a new key, through the dialog.
    row.get_by_role("link", name="Edit").click()
    dialog.wait_for()
    dialog.locator("#custom-form").wait_for()
    assert dialog.locator("#id_name").input_value() == "My LLM"
    dialog.locator("#id_api_key").fill(SECOND_KEY)
    dialog.get_by_role("button", name="Save").click()
    page.get_by_text("Saved My LLM.").wait_for()
    assert_no_key(page)
    assert ProviderConnection.objects.get(provider_id="my-llm").api_key == SECOND_KEY
    assert stub.requests[-1].authorization == f"Bearer {SECOND_KEY}"

    # Test, in place (htmx swaps the row).
    page.evaluate("window.__sameDocument = true")
    page.locator('[data-provider-id="my-llm"]').get_by_role("button", name="Test").click()
    page.locator('[data-provider-id="my-llm"]').get_by_text(
        "the provider accepted the key"
    ).wait_for()
    assert page.evaluate("window.__sameDocument") is True

    # Disconnect: a confirm dialog first; keeping it changes nothing.
    page.locator('[data-provider-id="my-llm"]').get_by_role("link", name="Disconnect").click()
    dialog.wait_for()
    dialog.get_by_text("Disconnect My LLM?").wait_for()
    dialog.get_by_role("button", name="Disconnect").click()
    page.get_by_text("Disconnected My LLM.").wait_for()
    assert page.locator('[data-provider-id="my-llm"]').count() == 0
    assert not ProviderConnection.objects.filter(provider_id="my-llm").exists()
    assert AuditEvent.objects.filter(action="disconnected", provider_id="my-llm").exists()
    assert_no_key(page)


def test_the_basic_forms_work_without_javascript(browser, live_server, alice, stub):
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        log_in(page, live_server)
        page.goto(live_server.url + "/settings/providers/")
        page.get_by_role("link", name="+ Add provider").click()
        page.wait_for_url(re.compile(r".*/settings/providers/add/$"))
        page.get_by_role("searchbox", name="Search providers").fill("anthro")
        page.get_by_role("button", name="Search").click()
        page.wait_for_url(re.compile(r".*/add/\?q=anthro$"))
        assert page.locator("[data-catalog-id]").count() == 1
        page.goto(live_server.url + "/settings/providers/custom/")
        page.fill("#id_provider_id", "plain-llm")
        page.fill("#id_name", "Plain LLM")
        page.fill("#id_base_url", stub.base_url)
        page.fill("#id_models", "stub-model")
        page.fill("#id_api_key", FIRST_KEY)
        page.get_by_role("button", name="Add provider").click()
        page.wait_for_url(live_server.url + "/settings/providers/")
        assert page.locator('[data-provider-id="plain-llm"][data-status="connected"]').count() == 1
        page.locator('[data-provider-id="plain-llm"]').get_by_role("link", name="Edit").click()
        page.fill("#id_api_key", SECOND_KEY)
        page.get_by_role("button", name="Save").click()
        page.wait_for_url(live_server.url + "/settings/providers/")
        page.locator('[data-provider-id="plain-llm"]').get_by_role(
            "link", name="Disconnect"
        ).click()
        page.wait_for_url(re.compile(r".*/plain-llm/disconnect/$"))
        page.get_by_role("button", name="Disconnect").click()
        page.wait_for_url(live_server.url + "/settings/providers/")
        assert "Disconnected Plain LLM." in page.content()
        assert_no_key(page)
        assert not ProviderConnection.objects.exists()
    finally:
        context.close()
