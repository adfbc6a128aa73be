"""A tool's server asks the user to fill a form (elicitation), answered on the chat page in a real browser:
Playwright drives Debian's Chromium against the platform served by Daphne, with the stdio test MCP server's
``book_table`` and a scripted model."""

import json
import shutil

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from chats.models import ToolApproval, ToolExecution

from .conftest import platform_process, stdio_test_server
from .fakes.wire import ToolCallSpec, Turn
from .test_browser import CHROMIUM_ARGS

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


def test_an_elicitation_form_is_filled_in_the_browser_and_its_answer_reaches_the_tool(user, providers):
    from playwright.sync_api import expect, sync_playwright

    # given a model that calls book_table, whose server asks for: name (required), guests (an integer,
    # default 2), budget (a number, default 30), outdoor (a boolean) and seating (an enum, default "inside")
    user.password = PBKDF2PasswordHasher().encode("browser-pass-123", "browsertestsalt")
    user.save(update_fields=["password"])
    stdio_test_server(env={"TEST_SERVER_ELICITATION": "1"}, timeout_seconds=10).save()
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("test__book_table", {}, id="call_book")]),
        Turn(text="Booked a terrace table for Ada."),
    )
    booking = {"name": "Ada", "guests": 4, "budget": 30.0, "outdoor": True, "seating": "terrace"}

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
            page.fill("#input", "Book a table")
            page.press("#input", "Enter")

            # when the form shows in the tool's card, with its fields, the required one marked, and the defaults
            card = page.locator(".tool[data-call-id=call_book]")
            form = card.locator("form.elicitation")
            expect(form, "\n".join(problems)).to_be_visible(timeout=30_000)
            expect(card.locator(".state")).to_have_text("waiting for your answer")
            expect(form.locator("p").first).to_have_text("test asks: Details for the booking")
            expect(form.locator("label.elicitation-field > span")).to_have_text(
                ["Name *", "Guests", "Budget", "Outdoor", "Seating"]
            )
            expect(form.locator("input[name=name]")).to_have_value("")
            expect(form.locator("input[name=guests]")).to_have_value("2")
            expect(form.locator("input[name=budget]")).to_have_value("30")
            expect(form.locator("input[name=outdoor]")).not_to_be_checked()
            expect(form.locator("select[name=seating] option")).to_have_text(["", "inside", "terrace", "bar"])
            expect(form.locator("select[name=seating]")).to_have_value("inside")

            # an answer without the required name is refused, and the form stays to try again
            form.locator("button[data-action=accept]").click()
            expect(form.locator(".elicitation-error")).to_contain_text("name: Required.")

            # the user fills it in and accepts
            form.locator("input[name=name]").fill("Ada")
            form.locator("input[name=guests]").fill("4")
            form.locator("input[name=outdoor]").check()
            form.locator("select[name=seating]").select_option("terrace")
            form.locator("button[data-action=accept]").click()

            # then the card says it was answered, the tool's result shows the answer, and the reply follows
            expect(card.locator(".approval .decided")).to_have_text("Answered.", timeout=30_000)
            expect(form).to_have_count(0)
            expect(page.locator(".msg.assistant", has_text="Booked a terrace table for Ada.")).to_have_count(
                1, timeout=30_000
            )
            expect(card).to_have_class("tool ok")
            result = card.locator("pre.result")
            expect(result).to_have_count(1)
            assert json.loads(result.inner_text()) == {"action": "accept", "booking": booking}
            assert problems == []
        finally:
            browser.close()

    row = ToolApproval.objects.get()
    assert (row.tool, row.status, row.decided_by_id) == ("elicitation/create", "approved", user.pk)
    assert row.arguments["response"] == {"action": "accept", "content": booking}
    execution = ToolExecution.objects.get()
    assert (execution.tool_call_id, execution.tool, execution.is_error) == ("call_book", "book_table", False)
    assert json.loads(execution.result[0]["text"]) == {"action": "accept", "booking": booking}
    sent = providers["openai"].requests_to("/chat/completions")[1].json["messages"]
    assert [json.loads(m["content"]) for m in sent if m["role"] == "tool"] == [{"action": "accept", "booking": booking}]
