"""OAuth sign-in end to end in a real browser: Playwright drives Debian's Chromium from the chat page's Connect
button through the OAuth-protected test server's authorization endpoint and back to the platform's callback,
then a turn whose tool call reaches the protected server with this user's token."""

import hashlib
import json
import shutil

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from mcp_servers.models import McpOAuthToken, McpServer
from mcp_servers.oauth import oauth_stored_read

from .conftest import platform_process
from .fakes.wire import ToolCallSpec, Turn
from .test_browser import CHROMIUM_ARGS
from .test_mcp_oauth import oauth_test_server

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


def test_connect_in_the_browser_then_a_turn_uses_the_users_token(user, other_user, providers, settings):
    # The live server and this process must read each other's encrypted rows: the same key for both.
    key = Fernet.generate_key().decode()
    settings.MCP_CREDENTIALS_KEYS = [key]
    user.password = PBKDF2PasswordHasher().encode("browser-pass-123", "browsertestsalt")
    user.save(update_fields=["password"])
    providers["openai"].push(
        Turn(text="Asking the server.", tool_calls=[ToolCallSpec("secure__whoami", {})]),
        Turn(text="The server knows you."),
    )

    # The ORM is not for Playwright's thread (it runs an event loop): the checks of rows come after it.
    with oauth_test_server() as base:
        McpServer.objects.create(
            name="secure", display_name="Secure", transport="streamable_http", url=f"{base}/mcp", auth="oauth"
        )
        with platform_process(MCP_CREDENTIALS_KEYS=key) as base_url:
            shown = _browse(base, base_url, expect_page_problems := [])
        row = McpOAuthToken.objects.get(user=user)
        tokens, _client = oauth_stored_read(server_name="secure", user_id=user.pk)

    assert expect_page_problems == []
    assert row.signed_in_at is not None
    assert tokens is not None
    assert tokens.access_token not in row.data
    assert shown["token_sha"] == hashlib.sha256(tokens.access_token.encode()).hexdigest()[:16]
    assert shown["subject"] == "person-1"
    offered = providers["openai"].requests_to("chat/completions")[0].json["tools"]
    assert [tool["function"]["name"] for tool in offered] == ["secure__whoami"]
    assert not McpOAuthToken.objects.filter(user=other_user).exists()


def _browse(base: str, base_url: str, problems: list[str]) -> dict:
    """Sign in with the Connect button, then ask for the tool; what the tool card shows."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        visited: list[str] = []
        page.on("request", lambda request: visited.append(request.url) if request.is_navigation_request() else None)
        try:
            page.goto(f"{base_url}/")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "browser-pass-123")
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base_url}/")

            # the server needs alice to sign in: a Connect button, and it is not among her tools
            connect = page.locator("#server-setup .sign-in button", has_text="Connect")
            expect(connect, "\n".join(problems)).to_be_visible(timeout=15_000)
            expect(page.locator("#server-setup")).to_contain_text("Secure needs you to sign in")
            connect.click()

            # to the authorization server (it approves at once), back through the callback to the chat page
            expect(page.locator("#status")).to_have_text("Connected to secure.", timeout=15_000)
            expect(page).to_have_url(f"{base_url}/")
            assert any(url.startswith(f"{base}/authorize?") for url in visited)
            assert any(url.startswith(f"{base_url}/api/mcp/oauth/callback?code=") for url in visited)
            expect(page.locator("#server-setup .sign-in")).to_have_count(0)

            # a turn: the model calls the protected server's tool with alice's token
            page.click("#new-chat")
            expect(page.locator("#input")).to_be_enabled(timeout=15_000)
            page.select_option("#provider", "openai")
            expect(page.locator("#model option[value=gpt-4o-mini]")).to_have_count(1)
            page.select_option("#model", "gpt-4o-mini")
            page.fill("#input", "Who am I to the secure server?")
            page.press("#input", "Enter")
            expect(page.locator(".tool.ok")).to_have_count(1, timeout=60_000)
            expect(page.locator(".msg.assistant", has_text="The server knows you.")).to_be_visible(timeout=30_000)
            page.locator(".tool summary").click()
            return json.loads(page.locator(".tool pre.result").inner_text())
        finally:
            browser.close()
