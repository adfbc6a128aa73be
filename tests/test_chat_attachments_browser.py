"""The chat page's MCP prompt picker and Attach control, in a real browser (Playwright driving Debian's
Chromium) against the platform served by Daphne, with the stdio test MCP server and a scripted model."""

import shutil

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from .conftest import platform_process, stdio_test_server
from .fakes.wire import Turn
from .test_browser import CHROMIUM_ARGS

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


def test_a_prompt_is_rendered_into_the_box_and_a_resource_goes_with_the_message(user, providers):
    from playwright.sync_api import expect, sync_playwright

    user.password = PBKDF2PasswordHasher().encode("browser-pass-123", "browsertestsalt")
    user.save(update_fields=["password"])
    stdio_test_server(timeout_seconds=10).save()
    providers["openai"].push(Turn(text="Looks fine."))

    with platform_process() as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        problems = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        try:
            page.goto(f"{base_url}/")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "browser-pass-123")
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base_url}/")
            page.click("#new-chat")
            expect(page.locator("#input"), "\n".join(problems)).to_be_enabled(timeout=15_000)
            page.select_option("#provider", "openai")
            expect(page.locator("#model option[value=gpt-4o-mini]")).to_have_count(1)
            page.select_option("#model", "gpt-4o-mini")

            # the test server's prompt is in the picker, apart from the system prompts
            option = page.locator("#prompt optgroup[label='MCP prompts'] option")
            expect(option).to_have_text(["review (test)"], timeout=15_000)
            page.select_option("#prompt", "mcp:test:review")

            # it asks for its arguments, the required one marked, and renders into the message box
            form = page.locator("#composer-panel form.prompt-form")
            expect(form.locator("label")).to_have_text(["code *", "language"])
            expect(page.locator("#prompt")).to_have_value("")  # the system prompt choice is unchanged
            form.locator("input[name=code]").fill("print(1)")
            form.locator("input[name=language]").fill("rust")
            form.locator("button[type=submit]").click()
            expect(page.locator("#input")).to_have_value("Please review this rust code:\nprint(1)")
            expect(form).to_have_count(0)

            # a resource picked from the server's list shows as a chip and goes with the message
            page.click("#attach")
            page.locator("#composer-panel .resource-list button[data-uri='config://app']").click()
            expect(page.locator("#attachments .chip")).to_have_text(["test: config://appRemove"])
            page.press("#input", "Enter")
            expect(page.locator(".msg.assistant", has_text="Looks fine.")).to_have_count(1, timeout=30_000)
            expect(page.locator("#attachments .chip")).to_have_count(0)
            sent = providers["openai"].requests_to("/chat/completions")[-1].json["messages"]
            assert sent == [
                {
                    "role": "user",
                    "content": "Please review this rust code:\nprint(1)"
                    '\n\nAttached resource config://app (application/json):\n{"feature": true}',
                }
            ]

            # the stored message shows the text typed, and the attachment apart from it
            page.reload()
            user_message = page.locator(".msg.user")
            expect(user_message.locator("details.attachment summary")).to_have_text(
                ["Attached: config://app (application/json)"], timeout=15_000
            )
            user_message.locator("details.attachment summary").click()
            expect(user_message.locator("details.attachment pre")).to_have_text('{"feature": true}')
            assert problems == []
        finally:
            browser.close()
