"""The official Python SDK (azure-servicebus, pure-Python AMQP) against the running binary."""

import datetime
import tempfile
import time
import uuid

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from conftest import Server


def body(m):
    return b"".join(m.body).decode()


def receive_n(receiver, n, wait=5, deadline=30):
    got = []
    end = time.time() + deadline
    while len(got) < n and time.time() < end:
        got.extend(receiver.receive_messages(max_message_count=n - len(got), max_wait_time=wait))
    return got


def test_send_receive_complete(server, client):
    q = server.create_queue()
    with client.get_queue_sender(q) as s:
        s.send_messages(
            ServiceBusMessage(
                "hello",
                application_properties={"n": 7, "s": "x", "b": True},
                subject="greeting",
                correlation_id="corr-1",
                content_type="text/plain",
                message_id="mid-1",
            )
        )
    with client.get_queue_receiver(q, max_wait_time=5) as r:
        msgs = receive_n(r, 1)
        assert len(msgs) == 1
        m = msgs[0]
        assert body(m) == "hello"
        assert m.message_id == "mid-1"
        assert m.subject == "greeting"
        assert m.correlation_id == "corr-1"
        assert m.content_type == "text/plain"
        assert m.application_properties[b"n"] == 7
        assert m.application_properties[b"s"] == b"x" or m.application_properties[b"s"] == "x"
        assert m.delivery_count == 0
        assert m.sequence_number >= 1
        assert m.enqueued_time_utc is not None
        assert m.locked_until_utc is not None
        assert m.lock_token is not None
        r.complete_message(m)
        assert r.receive_messages(max_message_count=1, max_wait_time=1) == []
        assert r.peek_messages(10) == []


def test_abandon_increments_delivery_count(server, client):
    q = server.create_queue()
    with client.get_queue_sender(q) as s:
        s.send_messages(ServiceBusMessage("again"))
    with client.get_queue_receiver(q, max_wait_time=5) as r:
        first = receive_n(r, 1)[0]
        assert first.delivery_count == 0
        r.abandon_message(first)
        second = receive_n(r, 1)[0]
        assert body(second) == "again"
        assert second.delivery_count == 1
        r.complete_message(second)


def test_dead_letter_and_dlq_receive(server, client):
    q = server.create_queue()
    with client.get_queue_sender(q) as s:
        s.send_messages(ServiceBusMessage("bad"))
    with client.get_queue_receiver(q, max_wait_time=5) as r:
        m = receive_n(r, 1)[0]
        r.dead_letter_message(m, reason="poison", error_description="cannot parse")
        assert r.receive_messages(max_message_count=1, max_wait_time=1) == []
    with client.get_queue_receiver(q, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=5) as dlq:
        d = receive_n(dlq, 1)[0]
        assert body(d) == "bad"
        assert d.dead_letter_reason == "poison"
        assert d.dead_letter_error_description == "cannot parse"
        dlq.complete_message(d)


def test_defer_and_receive_deferred(server, client):
    q = server.create_queue()
    with client.get_queue_sender(q) as s:
        s.send_messages(ServiceBusMessage("later"))
    with client.get_queue_receiver(q, max_wait_time=5) as r:
        m = receive_n(r, 1)[0]
        seq = m.sequence_number
        r.defer_message(m)
        assert r.receive_messages(max_message_count=1, max_wait_time=1) == []
        deferred = r.receive_deferred_messages([seq])
        assert len(deferred) == 1
        assert body(deferred[0]) == "later"
        r.complete_message(deferred[0])
        assert r.peek_messages(5) == []


def test_schedule_and_cancel(server, client):
    q = server.create_queue()
    now = datetime.datetime.now(datetime.timezone.utc)
    with client.get_queue_sender(q) as s:
        keep = s.schedule_messages(ServiceBusMessage("soon"), now + datetime.timedelta(seconds=2))
        drop = s.schedule_messages(ServiceBusMessage("never"), now + datetime.timedelta(seconds=2))
        assert len(keep) == 1 and len(drop) == 1
        s.cancel_scheduled_messages(drop)
    with client.get_queue_receiver(q, max_wait_time=5) as r:
        peeked = r.peek_messages(10)
        assert [body(p) for p in peeked] == ["soon"]
        assert peeked[0].scheduled_enqueue_time_utc is not None
        msgs = receive_n(r, 1, wait=5, deadline=15)
        assert [body(m) for m in msgs] == ["soon"]
        assert time.time() >= now.timestamp() + 1.5
        r.complete_message(msgs[0])
        assert r.receive_messages(max_message_count=1, max_wait_time=3) == []


def test_peek(server, client):
    q = server.create_queue()
    with client.get_queue_sender(q) as s:
        s.send_messages([ServiceBusMessage(f"p{i}") for i in range(5)])
    with client.get_queue_receiver(q) as r:
        peeked = r.peek_messages(3)
        assert [body(p) for p in peeked] == ["p0", "p1", "p2"]
        more = r.peek_messages(10, sequence_number=peeked[-1].sequence_number + 1)
        assert [body(p) for p in more] == ["p3", "p4"]
        # Peeking does not lock or consume.
        assert len(receive_n(r, 5)) == 5


def test_renew_lock(server, client):
    q = server.create_queue(LockDuration="PT5S")
    with client.get_queue_sender(q) as s:
        s.send_messages(ServiceBusMessage("hold"))
    with client.get_queue_receiver(q, max_wait_time=5) as r:
        m = receive_n(r, 1)[0]
        before = m.locked_until_utc
        time.sleep(1.1)
        after = r.renew_message_lock(m)
        assert after > before
        time.sleep(4.5)  # past the original lock, within the renewed one
        r.complete_message(m)
        assert r.peek_messages(5) == []


def test_expired_lock_cannot_be_completed(server, client):
    from azure.servicebus.exceptions import MessageLockLostError

    q = server.create_queue(LockDuration="PT1S")
    with client.get_queue_sender(q) as s:
        s.send_messages(ServiceBusMessage("slow"))
    with client.get_queue_receiver(q, max_wait_time=5) as r:
        m = receive_n(r, 1)[0]
        time.sleep(2)
        # The disposition is refused with com.microsoft:message-lock-lost, which the SDK maps to
        # MessageLockLostError (azure/servicebus/_transport/_pyamqp_transport.py,
        # _ERROR_CODE_TO_ERROR_MAPPING); any other ServiceBusError (a dropped connection, a
        # crashed server) fails this test.
        with pytest.raises(MessageLockLostError):
            r.complete_message(m)


def test_receive_and_delete(server, client):
    q = server.create_queue()
    with client.get_queue_sender(q) as s:
        s.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
    with client.get_queue_receiver(q, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=5) as r:
        msgs = receive_n(r, 2)
        assert sorted(body(m) for m in msgs) == ["a", "b"]
    with client.get_queue_receiver(q) as r:
        assert r.peek_messages(5) == []


def test_sessions_with_state(server, client):
    q = server.create_queue(RequiresSession="true")
    with client.get_queue_sender(q) as s:
        s.send_messages([ServiceBusMessage(f"a{i}", session_id="sa") for i in range(3)])
        s.send_messages([ServiceBusMessage("b0", session_id="sb")])
    with client.get_queue_receiver(q, session_id="sa", max_wait_time=5) as r:
        assert r.session.session_id == "sa"
        assert r.session.locked_until_utc is not None
        msgs = receive_n(r, 3)
        assert [body(m) for m in msgs] == ["a0", "a1", "a2"]
        assert all(m.session_id == "sa" for m in msgs)
        for m in msgs:
            r.complete_message(m)
        r.session.set_state(b"checkpoint-3")
        assert r.session.get_state() == b"checkpoint-3"
        until = r.session.renew_lock()
        assert until is not None
    with client.get_queue_receiver(q, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5) as r:
        assert r.session.session_id == "sb"
        msgs = receive_n(r, 1)
        assert [body(m) for m in msgs] == ["b0"]
        r.complete_message(msgs[0])
    with client.get_queue_receiver(q, session_id="sa", max_wait_time=5) as r:
        assert r.session.get_state() == b"checkpoint-3"


def test_next_available_session_timeout(server, client):
    """NEXT_AVAILABLE_SESSION with no session left times out with OperationTimeoutError.

    (The SDK exposes no list-sessions call; `com.microsoft:get-message-sessions` is tested at
    frame level in tests/amqp_frames.rs.)"""
    from azure.servicebus.exceptions import OperationTimeoutError

    q = server.create_queue(RequiresSession="true")
    with client.get_queue_sender(q) as s:
        s.send_messages([ServiceBusMessage("x", session_id=sid) for sid in ("s1", "s2")])
    for _ in range(2):
        with client.get_queue_receiver(q, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5) as r:
            for m in receive_n(r, 1):
                r.complete_message(m)
    started = time.time()
    # The session attach is refused with com.microsoft:timeout, mapped to OperationTimeoutError.
    with pytest.raises(OperationTimeoutError):
        with client.get_queue_receiver(q, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2) as r:
            r.receive_messages(max_wait_time=1)
    assert time.time() - started < 20


def test_topic_fanout_with_correlation_filters(server, client):
    t = server.create_topic()
    server.create_subscription(t, "all")
    server.create_subscription(t, "red")
    server.delete(f"{t}/Subscriptions/red/Rules/$Default")
    server.create_correlation_rule(t, "red", "only-red", Label="red")
    with client.get_topic_sender(t) as s:
        s.send_messages([ServiceBusMessage("r1", subject="red"), ServiceBusMessage("b1", subject="blue")])
    with client.get_subscription_receiver(t, "all", max_wait_time=5) as r:
        msgs = receive_n(r, 2)
        assert sorted(body(m) for m in msgs) == ["b1", "r1"]
        for m in msgs:
            r.complete_message(m)
    with client.get_subscription_receiver(t, "red", max_wait_time=5) as r:
        msgs = receive_n(r, 1)
        assert [body(m) for m in msgs] == ["r1"]
        r.complete_message(msgs[0])
        assert r.receive_messages(max_message_count=1, max_wait_time=1) == []


def test_batch_send(server, client):
    q = server.create_queue()
    with client.get_queue_sender(q) as s:
        batch = s.create_message_batch()
        for i in range(20):
            batch.add_message(ServiceBusMessage(f"m{i}", application_properties={"i": i}))
        s.send_messages(batch)
    with client.get_queue_receiver(q, max_wait_time=5) as r:
        msgs = receive_n(r, 20)
        assert [body(m) for m in msgs] == [f"m{i}" for i in range(20)]
        assert [m.application_properties[b"i"] for m in msgs] == list(range(20))
        for m in msgs:
            r.complete_message(m)


def test_thousand_messages_round_trip(server, client):
    q = server.create_queue()
    n = 1000
    with client.get_queue_sender(q) as s:
        batch = s.create_message_batch()
        for i in range(n):
            m = ServiceBusMessage(f"n{i}")
            try:
                batch.add_message(m)
            except ValueError:
                s.send_messages(batch)
                batch = s.create_message_batch()
                batch.add_message(m)
        s.send_messages(batch)
    seen = []
    with client.get_queue_receiver(q, max_wait_time=5, prefetch_count=100) as r:
        end = time.time() + 120
        while len(seen) < n and time.time() < end:
            for m in r.receive_messages(max_message_count=100, max_wait_time=5):
                seen.append(body(m))
                r.complete_message(m)
    assert seen == [f"n{i}" for i in range(n)]


def test_unknown_entity_is_not_found(server, client):
    from azure.servicebus.exceptions import MessagingEntityNotFoundError

    # The link attach is answered and then detached with amqp:not-found, which the SDK maps to
    # MessagingEntityNotFoundError (_pyamqp_transport.py, _handle_amqp_exception_with_condition).
    # A receiver surfaces the detach's condition. (A sender that sends before the detach
    # arrives has its pending delivery failed by pyamqp as amqp:unknown-error instead, so the
    # condition is checked on the receive path.)
    with pytest.raises(MessagingEntityNotFoundError):
        with client.get_queue_receiver("does-not-exist-" + uuid.uuid4().hex[:6], max_wait_time=2) as r:
            r.receive_messages(max_message_count=1, max_wait_time=2)


def test_persistence_across_restart():
    d = tempfile.mkdtemp(prefix="localzure-restart-")
    first = Server(d, {"LOCALZURE_STORAGE_TYPE": "sqlite"})
    try:
        q = first.create_queue("durable")
        with ServiceBusClient.from_connection_string(first.conn_str) as c:
            with c.get_queue_sender(q) as s:
                s.send_messages([ServiceBusMessage(f"d{i}") for i in range(3)])
    finally:
        first.stop()
    second = Server(d, {"LOCALZURE_STORAGE_TYPE": "sqlite"})
    try:
        with ServiceBusClient.from_connection_string(second.conn_str) as c:
            with c.get_queue_receiver("durable", max_wait_time=5) as r:
                msgs = receive_n(r, 3)
                assert [body(m) for m in msgs] == ["d0", "d1", "d2"]
                for m in msgs:
                    r.complete_message(m)
    finally:
        second.stop()


def test_async_client_round_trip(server):
    """The asyncio flavour of the SDK (azure.servicebus.aio) over the same endpoint."""
    import asyncio

    from azure.servicebus.aio import ServiceBusClient as AsyncClient

    q = server.create_queue()

    async def main():
        async with AsyncClient.from_connection_string(server.conn_str) as c:
            async with c.get_queue_sender(q) as s:
                await s.send_messages([ServiceBusMessage(f"a{i}") for i in range(3)])
            async with c.get_queue_receiver(q, max_wait_time=5) as r:
                got = []
                end = time.time() + 30
                while len(got) < 3 and time.time() < end:
                    for m in await r.receive_messages(max_message_count=3, max_wait_time=5):
                        got.append(body(m))
                        await r.complete_message(m)
                return got

    assert asyncio.run(main()) == ["a0", "a1", "a2"]


def test_large_message_spans_frames(server, client):
    """A 200 KB message crosses the 64 KB frame size both ways (multi-frame transfers)."""
    q = server.create_queue()
    payload = ("x" * 1000 + "\n") * 200
    with client.get_queue_sender(q) as s:
        s.send_messages(ServiceBusMessage(payload))
    with client.get_queue_receiver(q, max_wait_time=5) as r:
        m = receive_n(r, 1)[0]
        assert body(m) == payload
        r.complete_message(m)


def test_sas_validation_refuses_a_wrong_key():
    """With LOCALZURE_SAS_KEY_NAME/KEY set, the right key works and a wrong one is an auth error."""
    from conftest import sas_token
    from azure.servicebus.exceptions import ServiceBusAuthenticationError

    key_name, key = "RootManageSharedAccessKey", "the-right-key"
    s = Server(
        tempfile.mkdtemp(prefix="localzure-sas-"),
        {"LOCALZURE_SAS_KEY_NAME": key_name, "LOCALZURE_SAS_KEY": key},
    )
    try:
        s.auth = sas_token(f"http://127.0.0.1:{s.http_port}/", key_name, key)
        q = s.create_queue()

        def conn(k):
            return s.conn_str.replace("SharedAccessKey=SAS_KEY_VALUE", f"SharedAccessKey={k}")

        with ServiceBusClient.from_connection_string(conn(key)) as c:
            with c.get_queue_sender(q) as sender:
                sender.send_messages(ServiceBusMessage("authorized"))
                # Management requests go over the entity's $management link, which needs the
                # same token.
                later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
                seqs = sender.schedule_messages(ServiceBusMessage("later"), later)
                sender.cancel_scheduled_messages(seqs)
            with c.get_queue_receiver(q, max_wait_time=5) as receiver:
                peeked = receiver.peek_messages(max_message_count=5)
                assert [body(m) for m in peeked] == ["authorized"]
                got = receive_n(receiver, 1)
                assert [body(m) for m in got] == ["authorized"]
                receiver.complete_message(got[0])

        with ServiceBusClient.from_connection_string(conn("a-wrong-key"), retry_total=0) as c:
            # The CBS put-token answers 401; the SDK surfaces it as an authentication error.
            with pytest.raises(ServiceBusAuthenticationError):
                with c.get_queue_sender(q) as sender:
                    sender.send_messages(ServiceBusMessage("refused"))
    finally:
        s.stop()
