"""No dead ends on the chat page, in a real browser (Playwright, Debian's Chromium, Daphne): a refused message
gives the composer back, a failed reply says so live and after a reload with a working Retry, and a reply's
usage line reads the same live and after a reload."""

import shutil
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from .conftest import platform_process
from .fakes.wire import Fail, Turn
from .test_browser import CHROMIUM_ARGS

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


@pytest.fixture
def browser_page(user, providers):
    """A signed-in chat page on a new chat, openai's gpt-4o-mini picked; yields (page, base_url, problems)."""
    from playwright.sync_api import expect, sync_playwright

    # The server process checks passwords with the real (PBKDF2) hasher, not the tests' fast one.
    user.password = PBKDF2PasswordHasher().encode("browser-pass-123", "browsertestsalt")
    user.save(update_fields=["password"])
    # One try per provider call: a scripted failure is the turn's failure.
    with platform_process(PROVIDER_MAX_RETRIES="0") as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        problems: list[str] = []  # shown if a test fails: the page's own errors
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        try:
            page.goto(f"{base_url}/")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "browser-pass-123")
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base_url}/")
            page.click("#new-chat")
            expect(page.locator("#input"), "\n".join(problems)).to_be_enabled(timeout=15_000)
            pick_openai(page)
            yield page, base_url, problems
        finally:
            browser.close()


def pick_openai(page) -> None:
    from playwright.sync_api import expect

    page.select_option("#provider", "openai")
    expect(page.locator("#model option[value=gpt-4o-mini]")).to_have_count(1)
    page.select_option("#model", "gpt-4o-mini")


def test_a_refused_message_gives_the_composer_back_and_the_next_one_streams(browser_page, providers):
    from playwright.sync_api import expect

    page, _, problems = browser_page
    providers["openai"].push(Turn(text="Streamed after all.", chunk_size=2))
    # a provider the server does not know: the message is refused before any turn starts
    page.evaluate(
        "() => { const s = document.querySelector('#provider');"
        " s.append(new Option('Gone', 'gone')); s.value = 'gone'; }"
    )

    page.fill("#input", "Hello there")
    page.press("#input", "Enter")

    notice = page.locator(".notice.error-notice")
    expect(notice, "\n".join(problems)).to_contain_text("Not sent:", timeout=15_000)
    expect(page.locator(".msg.user")).to_have_count(0)  # the message was not taken: it is back in the box
    expect(page.locator("#input")).to_have_value("Hello there")
    expect(page.locator("#input")).to_be_enabled()
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#stop")).to_be_hidden()

    # with a provider that exists, Retry sends it, and the reply streams
    pick_openai(page)
    notice.locator("button.retry").click()
    expect(page.locator(".msg.assistant")).to_contain_text("Streamed after all.", timeout=30_000)
    expect(page.locator(".msg.user")).to_have_text(["Hello there"])
    expect(notice).to_have_count(0)
    expect(page.locator("#send")).to_be_enabled()

    # and the message after that too
    providers["openai"].push(Turn(text="And again."))
    page.fill("#input", "Once more")
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant").last).to_contain_text("And again.", timeout=30_000)
    expect(page.locator(".msg.user")).to_have_text(["Hello there", "Once more"])
    assert problems == []


def test_a_message_over_budget_says_until_when_and_offers_no_retry(browser_page, user):
    from playwright.sync_api import expect

    page, _, problems = browser_page
    user.monthly_budget_usd = Decimal("0")
    # Playwright runs an event loop in this thread: the ORM is used from another one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(user.save, update_fields=["monthly_budget_usd"]).result()
    page.reload()  # the chat's socket reads the user as it connects
    expect(page.locator("#input")).to_be_enabled(timeout=15_000)
    pick_openai(page)

    page.fill("#input", "Anything left?")
    page.press("#input", "Enter")

    notice = page.locator(".notice.error-notice")
    expect(notice, "\n".join(problems)).to_contain_text("Monthly budget", timeout=15_000)
    expect(notice).to_contain_text("Try again after")
    expect(notice.locator("button.retry")).to_have_count(0)  # waiting days is no retry
    expect(page.locator("#input")).to_have_value("Anything left?")
    expect(page.locator("#send")).to_be_enabled()
    assert problems == []


def test_a_failed_reply_shows_as_failed_live_and_after_a_reload_and_retry_works(browser_page, providers):
    from playwright.sync_api import expect

    page, _, problems = browser_page
    providers["openai"].push(Fail(503, "the model is overloaded"), Turn(text="Here I am."))

    page.fill("#input", "Are you there?")
    page.press("#input", "Enter")

    failed = page.locator(".msg.failed")
    expect(failed, "\n".join(problems)).to_contain_text("Reply failed:", timeout=30_000)
    expect(failed).to_contain_text("overloaded")
    live_reason = failed.locator(".failed-reason").inner_text()
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#stop")).to_be_hidden()

    # after a reload it is still there, failed, with the same reason
    page.reload()
    expect(page.locator(".msg.user")).to_have_text(["Are you there?"], timeout=15_000)
    expect(page.locator(".msg.failed .failed-reason")).to_have_text(live_reason)
    expect(page.locator("#input")).to_be_enabled()

    # Retry sends the user's message again, and this time the reply comes
    pick_openai(page)
    page.locator(".msg.failed button.retry").click()
    expect(page.locator(".msg.assistant")).to_contain_text("Here I am.", timeout=30_000)
    expect(page.locator(".msg.user")).to_have_text(["Are you there?", "Are you there?"])
    assert problems == []


def test_the_usage_line_reads_the_same_live_and_after_a_reload(browser_page, providers):
    from playwright.sync_api import expect

    page, _, problems = browser_page
    providers["openai"].push(Turn(text="Counted.", input_tokens=1000, output_tokens=100))

    page.fill("#input", "Count this")
    page.press("#input", "Enter")

    usage = page.locator(".msg.assistant .usage")
    expected = "openai · gpt-4o-mini · 1000 in / 100 out tokens · $0.000210"
    expect(usage, "\n".join(problems)).to_have_text(expected, timeout=30_000)
    expect(page.locator("#send")).to_be_enabled()  # the turn is over: the line is final

    page.reload()
    expect(page.locator(".msg.assistant .usage")).to_have_text(expected, timeout=15_000)
    assert problems == []


def test_stop_ends_a_running_reply_and_gives_the_composer_back(browser_page, providers, monkeypatch):
    from playwright.sync_api import expect

    page, _, problems = browser_page
    providers["openai"].push(Turn(text="word " * 400, chunk_size=5))
    monkeypatch.setattr(providers["openai"], "stream_delay", 0.05)  # a long reply: 400 pieces, 20 s

    page.fill("#input", "Tell me a long story")
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant"), "\n".join(problems)).to_contain_text("word", timeout=30_000)
    page.click("#stop")

    expect(page.locator("#stop")).to_be_hidden(timeout=15_000)
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator(".msg.assistant.partial")).to_have_count(1)
    assert problems == []
