"""The chat page's provider and model pickers in a real browser: what cannot answer is shown, not offered."""

import shutil

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from providers.models import Provider

from .conftest import free_port, platform_process
from .test_browser import CHROMIUM_ARGS

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


def test_unreachable_provider_is_disabled_with_its_reason_and_a_dead_model_list_says_so(user, providers):
    from playwright.sync_api import expect, sync_playwright

    # given: Ollama pointed at a port nobody listens on, and Gemini (keyed, so offered) whose server is down
    user.password = PBKDF2PasswordHasher().encode("browser-pass-123", "browsertestsalt")
    user.save(update_fields=["password"])
    ollama_url = f"http://127.0.0.1:{free_port()}"
    Provider.objects.filter(name="ollama").update(base_url=ollama_url)
    Provider.objects.filter(name="gemini").update(base_url=f"http://127.0.0.1:{free_port()}")

    with platform_process() as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        try:
            page.goto(f"{base_url}/")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "browser-pass-123")
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base_url}/")

            # then: Ollama is listed, disabled, with why; the others can be chosen
            ollama = page.locator("#provider option[value=ollama]")
            expect(ollama, "\n".join(problems)).to_have_text(f"Ollama — not reachable at {ollama_url}", timeout=15_000)
            expect(ollama).to_be_disabled()
            expect(page.locator("#provider option[value=openai]")).to_be_enabled()
            expect(page.locator("#provider option[value=openai]")).to_have_text("Openai")

            # and: a model list that could not be read says so instead of staying empty
            page.select_option("#provider", "gemini")
            note = page.locator("#model option.not-live")
            expect(note).to_contain_text("No models: ", timeout=15_000)
            expect(note).to_be_disabled()
            expect(page.locator("#model option:not(.not-live)")).to_have_count(0)

            # and: a live list has no such note
            page.select_option("#provider", "openai")
            expect(page.locator("#model option[value=gpt-4o-mini]")).to_have_count(1)
            expect(page.locator("#model option.not-live")).to_have_count(0)
            assert problems == []
        finally:
            browser.close()
