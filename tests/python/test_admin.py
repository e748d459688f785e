"""azure-servicebus 7.15's ServiceBusAdministrationClient (the ATOM management API) against the
binary: list operations page through `$skip`/`$top` by following the feeds' `next` links
(`management/_utils.py`: `extract_data_template` takes the second `<link>` of a feed,
`get_next_template` reads its `$skip` and `$top`)."""

import pytest

# 103 entities: a full page of the service's default 100 and a second page of 3.
MANY = 103


def names(prefix, n):
    return [f"{prefix}{i:03}" for i in range(n)]


def test_list_queues_pages_past_100(admin_server, admin_client):
    want = names("queue-", MANY)
    for n in want:
        admin_server.create_queue(n)
    got = [q.name for q in admin_client.list_queues()]
    assert sorted(got) == want
    assert len(got) == len(set(got)) == MANY


def test_list_queues_max_page_size_1(admin_server, admin_client):
    for n in ("a", "b", "c"):
        admin_server.create_queue(n)
    assert sorted(q.name for q in admin_client.list_queues(max_page_size=1)) == ["a", "b", "c"]
    pages = [[q.name for q in page] for page in admin_client.list_queues(max_page_size=1).by_page()]
    assert sorted(pages) == [["a"], ["b"], ["c"]]
    # The runtime-properties list pages the same way.
    assert len(list(admin_client.list_queues_runtime_properties(max_page_size=2))) == 3


def test_list_topics_pages(admin_server, admin_client):
    want = names("topic-", MANY)
    for n in want:
        admin_server.create_topic(n)
    assert sorted(t.name for t in admin_client.list_topics()) == want
    assert len(list(admin_client.list_topics(max_page_size=1))) == MANY
    pages = list(admin_client.list_topics(max_page_size=50).by_page())
    assert [len(list(p)) for p in pages] == [50, 50, 3]


def test_list_subscriptions_pages(admin_server, admin_client):
    admin_server.create_topic("events")
    want = names("sub-", MANY)
    for n in want:
        admin_server.create_subscription("events", n)
    assert sorted(s.name for s in admin_client.list_subscriptions("events")) == want
    small = admin_server.create_topic("small")
    for n in ("x", "y", "z"):
        admin_server.create_subscription(small, n)
    assert sorted(s.name for s in admin_client.list_subscriptions(small, max_page_size=1)) == ["x", "y", "z"]


def test_list_rules_pages(admin_server, admin_client):
    admin_server.create_topic("events")
    admin_server.create_subscription("events", "audit")
    # `$Default` plus 102 more.
    want = sorted(["$Default"] + names("rule-", MANY - 1))
    for n in want[1:]:
        admin_server.create_correlation_rule("events", "audit", n, Label=n)
    assert sorted(r.name for r in admin_client.list_rules("events", "audit")) == want
    admin_server.create_subscription("events", "few")
    for n in ("r1", "r2"):
        admin_server.create_correlation_rule("events", "few", n, Label=n)
    got = [r.name for r in admin_client.list_rules("events", "few", max_page_size=1)]
    assert sorted(got) == ["$Default", "r1", "r2"]


def test_empty_lists(admin_client):
    assert list(admin_client.list_queues()) == []
    assert list(admin_client.list_topics(max_page_size=1)) == []


@pytest.mark.parametrize("page", [1, 2, 3, 100])
def test_exact_multiples_end_without_an_empty_request(admin_server, admin_client, page):
    for n in names("q", 3):
        admin_server.create_queue(n)
    pages = [len(list(p)) for p in admin_client.list_queues(max_page_size=page).by_page()]
    assert sum(pages) == 3
    assert 0 not in pages
