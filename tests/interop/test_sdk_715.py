"""Issue 16's AMQP items as azure-servicebus 7.15 (pure-Python pyamqp) meets them: entities
that do not exist (4), oversize messages (3), amqp-value / amqp-sequence bodies (5).
"""

import time
import uuid

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageBodyType
from azure.servicebus.exceptions import MessageSizeExceededError, MessagingEntityNotFoundError


@pytest.fixture
def client(server):
    with ServiceBusClient.from_connection_string(server.conn_str) as c:
        yield c


def test_send_to_a_missing_queue_raises_entity_not_found(client):
    # pyamqp maps amqp:not-found on the link to MessagingEntityNotFoundError
    # (_pyamqp_transport.py, "handle NotFound error code"); the refusal's null target makes
    # pyamqp take the detach's error instead of a generic link failure.
    with pytest.raises(MessagingEntityNotFoundError):
        with client.get_queue_sender("missing-" + uuid.uuid4().hex[:6]) as sender:
            sender.send_messages(ServiceBusMessage("x"), timeout=15)


def test_receive_from_a_missing_queue_raises_entity_not_found(client):
    with pytest.raises(MessagingEntityNotFoundError):
        with client.get_queue_receiver("missing-" + uuid.uuid4().hex[:6], max_wait_time=5) as receiver:
            receiver.receive_messages(max_message_count=1, max_wait_time=5)


def test_management_operation_on_a_missing_queue_raises_entity_not_found(client):
    # peek goes over the entity's `$management` link; its attach is refused the same way
    # (null source/target, then detach with amqp:not-found).
    with pytest.raises(MessagingEntityNotFoundError):
        with client.get_queue_receiver("missing-" + uuid.uuid4().hex[:6]) as receiver:
            receiver.peek_messages(max_message_count=1, timeout=15)


def test_oversize_message_fails_promptly_and_the_sender_stays_usable(server, client):
    q = server.create_queue()
    with client.get_queue_sender(q) as sender:
        big = ServiceBusMessage(b"x" * (2 * 1024 * 1024))
        started = time.monotonic()
        with pytest.raises(MessageSizeExceededError):
            sender.send_messages(big, timeout=15)
        assert time.monotonic() - started < 5
        sender.send_messages(ServiceBusMessage("small"), timeout=15)
    with client.get_queue_receiver(q, max_wait_time=5) as receiver:
        got = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        assert [str(m) for m in got] == ["small"]
        receiver.complete_message(got[0])


def test_value_and_sequence_bodies_keep_their_section(server, client):
    q = server.create_queue()
    with client.get_queue_sender(q) as sender:
        sender.send_messages(AmqpAnnotatedMessage(value_body={"k": "v", "n": 3}))
        sender.send_messages(AmqpAnnotatedMessage(sequence_body=[[1, "two"]]))
    with client.get_queue_receiver(q, max_wait_time=5) as receiver:
        got = []
        while len(got) < 2:
            batch = receiver.receive_messages(max_message_count=2, max_wait_time=5)
            assert batch, "messages expected"
            got.extend(batch)
        for m in got:
            receiver.complete_message(m)
    value, sequence = got
    assert value.body_type == AmqpMessageBodyType.VALUE
    assert value.body == {b"k": b"v", b"n": 3} or value.body == {"k": "v", "n": 3}
    assert sequence.body_type == AmqpMessageBodyType.SEQUENCE
    assert [list(s) for s in sequence.body] in ([[1, "two"]], [[1, b"two"]])
