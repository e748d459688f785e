"""A plain AMQP 1.0 client against the emulator: python-qpid-proton 0.40 with its DEFAULT
settings (its BlockingConnection: session incoming-window 2^31-1, SASL as the URL asks).

Covers issue 16's "Plain AMQP 1.0 clients" and its AMQP items that proton found: large
incoming windows (1), duplicate link names (6), settlement outcomes (7), amqp-value bodies (5),
entities that do not exist (4).
"""

import uuid

import pytest
from proton import Delivery, Message, symbol
from proton.reactor import Filter
from proton.utils import BlockingConnection, BlockingSender, LinkDetached

TIMEOUT = 10


def connect(server, mech="ANONYMOUS"):
    if mech == "PLAIN":
        url = f"amqp://someuser:somepass@127.0.0.1:{server.amqp_port}"
        return BlockingConnection(url, timeout=TIMEOUT, allowed_mechs="PLAIN", allow_insecure_mechs=True)
    return BlockingConnection(server.amqp_url, timeout=TIMEOUT, allowed_mechs="ANONYMOUS")


@pytest.mark.parametrize("mech", ["ANONYMOUS", "PLAIN"])
def test_send_and_receive_with_default_settings(server, mech):
    # Regression (item 1): proton's default incoming-window is 2^31-1; the server used to
    # read any window above 5,000,000 as "wrapped" and never delivered.
    q = server.create_queue()
    conn = connect(server, mech)
    try:
        snd = conn.create_sender(q)
        snd.send(Message(body=b"hello", id="m1", properties={"color": "red"}))
        rcv = conn.create_receiver(q, credit=10)
        m = rcv.receive(timeout=TIMEOUT)
        rcv.accept()
        assert m.body == b"hello"
        assert m.id == "m1"
        assert m.properties["color"] == "red"
    finally:
        conn.close()


def test_amqp_value_bodies_round_trip_and_rest_sees_the_value(server):
    # Item 5: proton sends a dict or a str as an amqp-value section.
    q = server.create_queue()
    conn = connect(server)
    try:
        snd = conn.create_sender(q)
        snd.send(Message(body={"a": 1, "b": [1, 2]}))
        snd.send(Message(body="text"))
        rcv = conn.create_receiver(q, credit=2)
        first = rcv.receive(timeout=TIMEOUT)
        rcv.accept()
        second = rcv.receive(timeout=TIMEOUT)
        rcv.accept()
        rcv.close()
        assert first.body == {"a": 1, "b": [1, 2]}
        assert second.body == "text"
        # Sent after the receiver closed, so it cannot be prefetched (and locked) by it.
        snd.send(Message(body={"rest": True}))
    finally:
        conn.close()
    status, body, _ = server.rest_receive(q)
    assert status in (200, 201)
    assert body == b'{"rest":true}'


def next_delivery(rcv):
    m = rcv.receive(timeout=TIMEOUT)
    return m, rcv.fetcher.unsettled.popleft()


def test_settlement_outcomes(server):
    # Item 7: released (no delivery-count increment), modified delivery-failed (increment),
    # modified undeliverable-here (defer), rejected (dead-letter).
    q = server.create_queue()
    conn = connect(server)
    try:
        snd = conn.create_sender(q)
        snd.send(Message(body=b"x", id="once"))
        rcv = conn.create_receiver(q, credit=1)

        m, d = next_delivery(rcv)
        assert m.delivery_count == 0
        d.update(Delivery.RELEASED)
        d.settle()

        m, d = next_delivery(rcv)
        assert m.delivery_count == 0, "released must not count a delivery"
        d.local.failed = True
        d.update(Delivery.MODIFIED)
        d.settle()

        m, d = next_delivery(rcv)
        assert m.delivery_count == 1, "modified(delivery-failed) counts a delivery"
        d.local.undeliverable = True
        d.update(Delivery.MODIFIED)
        d.settle()
        rcv.close()

        # Deferred: no longer delivered by a plain receive.
        rcv2 = conn.create_receiver(q, credit=1)
        with pytest.raises(Exception):
            rcv2.receive(timeout=1)
        rcv2.close()

        snd.send(Message(body=b"y", id="dead"))
        rcv3 = conn.create_receiver(q, credit=1)
        m = rcv3.receive(timeout=TIMEOUT)
        assert m.id == "dead"
        rcv3.reject()
        dlq = conn.create_receiver(f"{q}/$DeadLetterQueue", credit=1)
        m = dlq.receive(timeout=TIMEOUT)
        dlq.accept()
        assert m.id == "dead"
    finally:
        conn.close()


def test_topic_and_subscription(server):
    t = server.create_topic()
    server.create_subscription(t, "s1")
    server.create_subscription(t, "s2")
    conn = connect(server)
    try:
        conn.create_sender(t).send(Message(body=b"fan-out", subject="news"))
        for sub in ("s1", "s2"):
            rcv = conn.create_receiver(f"{t}/Subscriptions/{sub}", credit=5)
            m = rcv.receive(timeout=TIMEOUT)
            rcv.accept()
            assert m.body == b"fan-out"
            assert m.subject == "news"
    finally:
        conn.close()


def test_sessions_by_group_id_and_session_filter(server):
    # Service Bus maps group-id to SessionId; a receiver names its session with the
    # com.microsoft:session-filter source filter (the service's AMQP extension; a plain client
    # passes it as an ordinary filter entry).
    q = server.create_queue(RequiresSession="true")
    conn = connect(server)
    try:
        snd = conn.create_sender(q)
        snd.send(Message(body=b"for-a", group_id="a"))
        snd.send(Message(body=b"for-b", group_id="b"))
        rcv = conn.create_receiver(
            q, credit=5, options=Filter({symbol("com.microsoft:session-filter"): "b"})
        )
        m = rcv.receive(timeout=TIMEOUT)
        rcv.accept()
        assert m.body == b"for-b"
        assert m.group_id == "b"
    finally:
        conn.close()


def test_duplicate_link_name_refuses_only_that_link(server):
    # Item 6: the second attach of a name is refused; the connection and the first link live.
    q = server.create_queue()
    conn = connect(server)
    try:
        first = conn.create_sender(q, name="same-name")
        # On a second session: proton itself matches an attach reply to its links by name
        # within a session, so it cannot attach one name twice on the same session.
        other = conn.conn.session()
        other.open()
        with pytest.raises(LinkDetached) as e:
            BlockingSender(conn, conn.container.create_sender(other, q, name="same-name"))
        assert e.value.condition == "amqp:invalid-field"
        first.send(Message(body=b"still works"))
        rcv = conn.create_receiver(q, credit=1)
        assert rcv.receive(timeout=TIMEOUT).body == b"still works"
        rcv.accept()
    finally:
        conn.close()


def test_missing_entity_is_not_found(server):
    # Item 4: attach with a null terminus, then detach with amqp:not-found.
    conn = connect(server)
    try:
        with pytest.raises(LinkDetached) as e:
            conn.create_sender("no-such-queue-" + uuid.uuid4().hex[:6])
        assert e.value.condition == "amqp:not-found"
        with pytest.raises(LinkDetached) as e:
            conn.create_receiver("no-such-queue-" + uuid.uuid4().hex[:6])
        assert e.value.condition == "amqp:not-found"
    finally:
        conn.close()
