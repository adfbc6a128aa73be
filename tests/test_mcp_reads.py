"""Resources and prompts read through the selectors (what the API and the chat turns call), the host's own
paging of listings, and config changes reaching this process's host when there is no Redis to carry them."""

import pytest
from asgiref.sync import async_to_sync
from mcp_types import ListPromptsResult, Prompt, TextResourceContents

from mcp_servers.host import MAX_PAGES, _every_page, get_host
from mcp_servers.selectors import mcp_prompt_get, mcp_prompts_list, mcp_resource_read, mcp_resources_list
from mcp_servers.services import mcp_server_save
from platform_site.exceptions import NotFound, ServiceUnavailable, ValidationFailed

from .conftest import stdio_test_server, wait_until

# The host reads McpServer rows from its own thread: rows must be committed to be seen.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def connected():
    server = stdio_test_server()
    server.save()
    get_host().ready(10)
    return server


def test_resources_list_gives_the_servers_resources_and_templates(user, connected):
    listing = async_to_sync(mcp_resources_list)(user=user, server="test")

    assert [(str(r.uri), r.mime_type) for r in listing.resources] == [("config://app", "application/json")]
    assert [t.uri_template for t in listing.resource_templates] == ["greeting://{name}"]


def test_resource_read_gives_its_contents(user, connected):
    contents = async_to_sync(mcp_resource_read)(user=user, server="test", uri="greeting://Ada")

    assert contents == [TextResourceContents(uri="greeting://Ada", mime_type="text/plain", text="Hello, Ada!")]


def test_reading_an_unknown_resource_is_not_found(user, connected):
    with pytest.raises(NotFound) as caught:
        async_to_sync(mcp_resource_read)(user=user, server="test", uri="nothing://here")

    assert (caught.value.code, caught.value.message) == ("mcp_not_found", "Unknown resource: nothing://here")


def test_prompts_list_gives_each_prompt_with_its_arguments(user, connected):
    prompts = async_to_sync(mcp_prompts_list)(user=user, server="test")

    assert [(p.name, [(a.name, a.required) for a in p.arguments or []]) for p in prompts] == [
        ("review", [("code", True), ("language", False)])
    ]


def test_prompt_get_fills_the_prompt_in(user, connected):
    result = async_to_sync(mcp_prompt_get)(user=user, server="test", prompt="review", arguments={"code": "x = 1"})

    assert [(m.role, m.content.text) for m in result.messages] == [("user", "Please review this python code:\nx = 1")]


def test_prompt_get_of_an_unknown_prompt_is_not_found(user, connected):
    with pytest.raises(NotFound) as caught:
        async_to_sync(mcp_prompt_get)(user=user, server="test", prompt="nope", arguments={})

    assert caught.value.code == "unknown_prompt"


def test_prompt_get_without_a_required_argument_names_it(user, connected):
    with pytest.raises(ValidationFailed) as caught:
        async_to_sync(mcp_prompt_get)(user=user, server="test", prompt="review", arguments={"language": "go"})

    assert caught.value.details == {"arguments": ["code"]}


def test_reads_of_a_disabled_server_are_unavailable(user):
    stdio_test_server(enabled=False).save()

    with pytest.raises(ServiceUnavailable) as caught:
        async_to_sync(mcp_prompts_list)(user=user, server="test")

    assert (caught.value.code, caught.value.details["status"]) == ("mcp_server_unavailable", "disabled")


def _pages(count: int):
    """A listing of ``count`` pages, one prompt each, every page but the last naming the next."""

    async def list_page(cursor: str | None) -> ListPromptsResult:
        number = int(cursor or 0)
        following = str(number + 1) if number + 1 < count else None
        return ListPromptsResult(prompts=[Prompt(name=f"p{number}")], next_cursor=following)

    return list_page


def test_listings_follow_every_page():
    prompts = async_to_sync(_every_page)(_pages(3), lambda page: page.prompts)

    assert [p.name for p in prompts] == ["p0", "p1", "p2"]


def test_a_listing_whose_cursors_never_end_is_cut_off():
    prompts = async_to_sync(_every_page)(_pages(MAX_PAGES + 5), lambda page: page.prompts)

    assert len(prompts) == MAX_PAGES


def test_without_redis_a_saved_change_reaches_this_processs_host(settings):
    # The app's ready() wires the broadcast to this process's host; without Redis nothing else carries it.
    server = stdio_test_server(env={"GREETING": "one"})
    mcp_server_save(server=server)
    host = get_host()
    host.ready(15)
    assert host.call_tool("test__env", {"name": "GREETING"}).text == "one"
    settings.REDIS_URL = ""

    server.env = {"GREETING": "two"}
    mcp_server_save(server=server)

    wait_until(lambda: host.call_tool("test__env", {"name": "GREETING"}).text == "two")
