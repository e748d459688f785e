"""azure-servicebus 7.8.3, the last release on uamqp (the C AMQP stack), run from its own
virtualenv (.venv-sb78) by scripts/interop-tests.sh.

Issue 16 item 2: settling a deferred message goes through `$management`
(`com.microsoft:update-disposition`), and uamqp encodes that request's `lock-tokens` array in a
way our codec cannot read. The server used to drop the request and the client waited forever;
it now answers every request whose message-id it can read (status 400 naming the problem).
"""

import time

import pytest

# uamqp always wraps its socket in TLS (its Python binding offers only TLS and WebSocket IO:
# uamqp/authentication/common.py builds `xio_from_tlsioconfig` / `xio_from_wsioconfig`), and
# 7.8.3 predates `UseDevelopmentEmulator=true`, so it cannot reach a plain-AMQP endpoint. The
# tests run once the emulator serves AMQPS (issue 17): set LOCALZURE_SB78_CONN_STR to its
# connection string.
pytestmark = pytest.mark.skipif(
    not __import__("os").environ.get("LOCALZURE_SB78_CONN_STR"),
    reason="azure-servicebus 7.8.3 (uamqp) needs AMQP over TLS; set LOCALZURE_SB78_CONN_STR",
)
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError


@pytest.fixture
def client(server):
    conn_str = __import__("os").environ["LOCALZURE_SB78_CONN_STR"]
    with ServiceBusClient.from_connection_string(conn_str) as c:
        yield c


def test_send_receive_complete(server, client):
    q = server.create_queue()
    with client.get_queue_sender(q) as sender:
        sender.send_messages(ServiceBusMessage("hello from uamqp"))
    with client.get_queue_receiver(q, max_wait_time=5) as receiver:
        got = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        assert [str(m) for m in got] == ["hello from uamqp"]
        receiver.complete_message(got[0])


def test_completing_a_deferred_message_is_answered(server, client):
    q = server.create_queue()
    with client.get_queue_sender(q) as sender:
        sender.send_messages(ServiceBusMessage("defer me"))
    with client.get_queue_receiver(q, max_wait_time=5) as receiver:
        (m,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        seq = m.sequence_number
        receiver.defer_message(m)
        (deferred,) = receiver.receive_deferred_messages([seq])
        started = time.monotonic()
        try:
            receiver.complete_message(deferred)
            completed = True
        except ServiceBusError as e:  # the 400 answer, raised by the SDK
            completed = False
            print("complete_message raised:", type(e).__name__, e)
        assert time.monotonic() - started < 10, "the request must be answered, not dropped"
    if completed:
        with client.get_queue_receiver(q, max_wait_time=2) as receiver:
            assert receiver.receive_deferred_messages([seq]) == []
