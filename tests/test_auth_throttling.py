"""Guessing is throttled: failed sign-ins per account and per IP, unknown API keys per IP, counted in the shared cache.

And a key made with a key never outlives it.
"""

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import api_key_create

from .factories import ChatFactory, UserFactory

PASSWORD = "pass-word-123"  # the factories' password
WRONG = "not-the-password"
LOGIN_WINDOW = 3600
KEY_WINDOW = 60
BAD_KEY = "llmp_000000000000_guess"


def _fresh_window(window: int, seconds_needed: int = 10) -> None:
    # Fixed windows: don't start a burst right before one ends (its counts would start over).
    while window - time.time() % window < seconds_needed:
        time.sleep(0.5)


@pytest.fixture
def login_limit(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_FAILURE_WINDOW_SECONDS = LOGIN_WINDOW
    _fresh_window(LOGIN_WINDOW)
    return 3


@pytest.fixture
def key_limit(settings):
    settings.API_KEY_FAILURE_LIMIT = 3
    settings.API_KEY_FAILURE_WINDOW_SECONDS = KEY_WINDOW
    _fresh_window(KEY_WINDOW)
    return 3


def _sign_in(username: str, password: str, ip: str) -> tuple[int, Client, object]:
    client = Client()
    response = client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)
    return response.status_code, client, response


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


# --- sign-in ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_failed_sign_ins_past_the_limit_lock_the_account_even_for_the_right_password(
    user, login_limit, django_assert_num_queries
):
    failures = [_sign_in("alice", WRONG, ip="198.51.100.1") for _ in range(login_limit)]
    assert [status for status, _, _ in failures] == [200] * login_limit
    assert b"Please enter a correct username and password" in failures[-1][2].content

    # from another address, with the right password: refused without looking the password up
    with django_assert_num_queries(0):
        status, client, response = _sign_in("alice", PASSWORD, ip="203.0.113.2")

    assert status == 429
    assert 1 <= int(response["Retry-After"]) <= LOGIN_WINDOW
    assert b"Too many failed sign-in attempts. Try again in" in response.content
    assert b'value="alice"' in response.content  # the form is shown again, filled in
    assert not _signed_in(client)


@pytest.mark.django_db
def test_another_account_from_another_address_is_not_blocked(user, other_user, login_limit):
    for _ in range(login_limit):
        _sign_in("alice", WRONG, ip="198.51.100.1")

    status, client, _ = _sign_in("bob", PASSWORD, ip="203.0.113.2")

    assert status == 302
    assert _signed_in(client)


@pytest.mark.django_db
def test_failed_sign_ins_past_the_limit_block_the_address(user, other_user, login_limit):
    for name in ("carol", "dave", "erin"):  # one guess each: no account reaches its limit
        _sign_in(name, WRONG, ip="198.51.100.1")

    blocked_status, blocked_client, _ = _sign_in("bob", PASSWORD, ip="198.51.100.1")
    elsewhere_status, elsewhere_client, _ = _sign_in("bob", PASSWORD, ip="203.0.113.2")

    assert (blocked_status, _signed_in(blocked_client)) == (429, False)
    assert (elsewhere_status, _signed_in(elsewhere_client)) == (302, True)


@pytest.mark.django_db
def test_a_successful_sign_in_resets_the_account_count(user, login_limit):
    for _ in range(login_limit - 1):
        _sign_in("alice", WRONG, ip="198.51.100.1")
    assert _sign_in("alice", PASSWORD, ip="198.51.100.1")[0] == 302

    for _ in range(login_limit - 1):
        _sign_in("alice", WRONG, ip="203.0.113.2")
    status, client, _ = _sign_in("alice", PASSWORD, ip="203.0.113.2")

    assert (status, _signed_in(client)) == (302, True)


@pytest.mark.django_db
def test_the_admin_sign_in_counts_with_the_login_page(login_limit):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    for _ in range(login_limit):
        _sign_in("root", WRONG, ip="198.51.100.1")
    client = Client()

    response = client.post("/admin/login/", {"username": "root", "password": PASSWORD}, REMOTE_ADDR="203.0.113.2")

    assert response.status_code == 200
    assert b"Too many failed sign-in attempts" in response.content
    assert not _signed_in(client)


@pytest.mark.django_db
@pytest.mark.skipif(not django_settings.REDIS_URL, reason="counts are shared between processes through Redis")
def test_failed_sign_ins_counted_by_another_process_lock_the_account(user, login_limit):
    # given another worker process that counted the failures, in the same Redis
    env = os.environ | {"LOGIN_FAILURE_LIMIT": str(login_limit), "LOGIN_FAILURE_WINDOW_SECONDS": str(LOGIN_WINDOW)}
    script = (
        "import django; django.setup()\n"
        "from accounts.throttling import login_attempt_reserve\n"
        f"for _ in range({login_limit}): login_attempt_reserve(ip='198.51.100.1', username='alice')\n"
    )
    subprocess.run([sys.executable, "-c", script], env=env, cwd=Path(__file__).parent.parent, check=True, timeout=60)

    # when this process is asked to sign alice in
    status, client, _ = _sign_in("alice", PASSWORD, ip="203.0.113.2")

    # then it is refused here too
    assert (status, _signed_in(client)) == (429, False)


@pytest.mark.django_db(transaction=True)
def test_parallel_guesses_get_no_more_password_checks_than_the_limit(user, login_limit):
    # Counted before the password is checked: guesses sent at once cannot all read the count before any adds to it.
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda i: _sign_in("alice", WRONG, ip=f"198.51.100.{i}")[0], range(8)))

    assert sorted(statuses) == [200] * login_limit + [429] * (8 - login_limit)


@pytest.mark.django_db
def test_a_successful_sign_in_does_not_count_against_the_address(user, login_limit):
    for _ in range(login_limit + 2):
        status, client, _ = _sign_in("alice", PASSWORD, ip="198.51.100.9")
        assert (status, _signed_in(client)) == (302, True)


# --- API keys ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_unknown_keys_past_the_limit_get_429_without_a_lookup(user, key_limit, django_assert_num_queries):
    client = APIClient()
    statuses = [client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {BAD_KEY}").status_code for _ in range(key_limit)]

    with django_assert_num_queries(0):
        refused = client.get("/api/me", HTTP_AUTHORIZATION="Bearer llmp_111111111111_another")

    assert statuses == [401] * key_limit
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= KEY_WINDOW
    assert refused.json()["error"]["code"] == "too_many_failed_attempts"
    assert refused.json()["error"]["message"].startswith("Too many invalid API keys from this address.")


@pytest.mark.django_db
def test_malformed_keys_count_too(user, key_limit):
    client = APIClient()
    for _ in range(key_limit):
        assert client.get("/api/me", HTTP_X_API_KEY="not-a-key").status_code == 401

    assert client.get("/api/me", HTTP_X_API_KEY="not-a-key").status_code == 429


@pytest.mark.django_db
def test_a_key_in_use_keeps_working_while_its_address_is_locked_out(user, key_limit):
    in_use = api_key_create(owner=user, name="in use").secret
    new_here = api_key_create(owner=user, name="new to this process").secret
    client = APIClient()
    assert client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {in_use}").status_code == 200
    for _ in range(key_limit):
        client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {BAD_KEY}")

    in_use_status = client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {in_use}").status_code
    new_here_status = client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {new_here}").status_code

    # a key this process found valid is no guess; one it has never seen is not looked up until the window ends
    assert (in_use_status, new_here_status) == (200, 429)


@pytest.mark.django_db
def test_unknown_keys_are_counted_per_address(user, key_limit):
    for _ in range(key_limit):
        APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {BAD_KEY}", REMOTE_ADDR="198.51.100.1")

    other_address = APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {BAD_KEY}", REMOTE_ADDR="203.0.113.2")

    assert other_address.status_code == 401


@pytest.mark.django_db
def test_revoked_and_expired_keys_are_not_counted_as_guesses(user, key_limit):
    issued = api_key_create(owner=user, name="old", expires_at=timezone.now() + timedelta(hours=1))
    ApiKey.objects.filter(pk=issued.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = APIClient()

    statuses = [client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {issued.secret}").status_code for _ in range(5)]
    guess = client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {BAD_KEY}")

    assert statuses == [401] * 5
    assert guess.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.django_db(transaction=True)
async def test_unknown_keys_on_the_websocket_are_counted_and_then_refused_with_4429(user, key_limit):
    from platform_site.asgi import application

    chat = await sync_to_async(ChatFactory)(owner=user)

    async def close_code() -> int:
        communicator = WebsocketCommunicator(
            application,
            f"/ws/chats/{chat.pk}/",
            headers=[(b"origin", b"http://localhost"), (b"authorization", f"Bearer {BAD_KEY}".encode())],
        )
        await communicator.connect(timeout=10)
        output = await communicator.receive_output(timeout=10)
        await communicator.disconnect(timeout=10)
        assert output["type"] == "websocket.close"
        return output["code"]

    codes = [await close_code() for _ in range(key_limit + 1)]

    assert codes == [4401] * key_limit + [4429]


# --- keys made with keys ------------------------------------------------------------------------------


@pytest.fixture
def short_lived(user):
    issued = api_key_create(owner=user, name="short", expires_at=timezone.now() + timedelta(hours=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client, issued.api_key


@pytest.mark.django_db
def test_a_key_made_with_a_short_lived_key_inherits_its_expiry(short_lived):
    client, creator = short_lived

    response = client.post("/api/keys", {"name": "child"}, format="json")

    assert response.status_code == 201
    assert parse_datetime(response.json()["expires_at"]) == creator.expires_at
    assert ApiKey.objects.get(name="child").expires_at == creator.expires_at


@pytest.mark.django_db
@pytest.mark.parametrize("later", [None, timedelta(hours=1, seconds=1), timedelta(days=365)])
def test_a_key_made_with_a_short_lived_key_cannot_outlive_it(short_lived, later):
    client, creator = short_lived
    expires_at = None if later is None else (creator.expires_at - timedelta(hours=1) + later).isoformat()

    response = client.post("/api/keys", {"name": "forever", "expires_at": expires_at}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "expires_after_creating_key"
    assert error["message"] == (
        f"A key created with an API key cannot outlive it: expires_at must be at most {creator.expires_at.isoformat()}."
    )
    assert list(error["details"]) == ["expires_at"]
    assert not ApiKey.objects.filter(name="forever").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("earlier", [timedelta(0), timedelta(minutes=30)])
def test_a_key_made_with_a_short_lived_key_may_expire_with_it_or_sooner(short_lived, earlier):
    client, creator = short_lived
    expires_at = creator.expires_at - earlier

    response = client.post("/api/keys", {"name": "child", "expires_at": expires_at.isoformat()}, format="json")

    assert response.status_code == 201
    assert ApiKey.objects.get(name="child").expires_at == expires_at


@pytest.mark.django_db
def test_revoking_a_key_revokes_the_keys_made_with_it_at_any_depth(short_lived, user):
    client, creator = short_lived
    child = client.post("/api/keys", {"name": "child"}, format="json").json()
    grandchild_client = APIClient()
    grandchild_client.credentials(HTTP_AUTHORIZATION=f"Bearer {child['key']}")
    grandchild = grandchild_client.post("/api/keys", {"name": "grandchild"}, format="json").json()
    api_key_create(owner=user, name="bystander")  # made in a browser session: not made with the revoked key
    owner = APIClient()
    owner.force_login(user)

    assert owner.delete(f"/api/keys/{creator.pk}").status_code in (200, 204)

    revoked = {key.name: key.revoked_at is not None for key in ApiKey.objects.all()}
    assert revoked == {"short": True, "child": True, "grandchild": True, "bystander": False}
    assert grandchild_client.get("/api/me").status_code == 401
    assert grandchild["name"] == "grandchild"


@pytest.mark.django_db
def test_a_key_without_expiry_may_make_a_key_without_expiry(api):
    response = api.post("/api/keys", {"name": "permanent", "expires_at": None}, format="json")

    assert response.status_code == 201
    assert response.json()["expires_at"] is None


@pytest.mark.django_db
def test_a_browser_session_may_make_a_key_without_expiry(user):
    api_key_create(owner=user, name="short", expires_at=timezone.now() + timedelta(hours=1))
    client = APIClient()
    client.force_login(user)

    response = client.post("/api/keys", {"name": "permanent"}, format="json")

    assert response.status_code == 201
    assert response.json()["expires_at"] is None
