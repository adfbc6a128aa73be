"""Tool names offered to models: <server>__<tool>, valid for every provider, deterministic, collision-free."""

import re

from mcp_servers.naming import MAX_LENGTH, namespace_tools

VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_plain_names_are_kept():
    names = namespace_tools([("time", "get_current_time"), ("files", "read-file")])

    assert names == {("time", "get_current_time"): "time__get_current_time", ("files", "read-file"): "files__read-file"}


def test_same_tool_on_two_servers_gets_two_names():
    names = namespace_tools([("alpha", "echo"), ("beta", "echo")])

    assert names[("alpha", "echo")] == "alpha__echo"
    assert names[("beta", "echo")] == "beta__echo"


def test_long_and_invalid_names_are_shortened_with_a_stable_hash():
    long_tool = "a_tool_with_a_deliberately_long_name_to_test_sanitising_xyz"  # 60 characters
    pairs = [("test", long_tool), ("web", "fetch.page/v2"), ("web", "fetch_page_v2")]

    first, second = namespace_tools(pairs), namespace_tools(list(reversed(pairs)))

    assert first == second
    assert all(VALID.match(name) for name in first.values())
    assert len(first[("test", long_tool)]) == MAX_LENGTH
    assert first[("test", long_tool)].startswith("test__a_tool_with")
    # "fetch.page/v2" sanitises to the other tool's plain name: both stay distinct
    assert first[("web", "fetch_page_v2")] == "web__fetch_page_v2"
    assert first[("web", "fetch.page/v2")].startswith("web__fetch_page_v2_")
    assert len(set(first.values())) == 3


def test_colliding_sanitised_names_both_get_hashes():
    names = namespace_tools([("s", "a.b"), ("s", "a/b")])

    assert names[("s", "a.b")] != names[("s", "a/b")]
    assert all(name.startswith("s__a_b_") for name in names.values())
