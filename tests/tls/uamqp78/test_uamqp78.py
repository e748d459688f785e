"""azure-servicebus 7.8.3, the last uamqp-based release (no emulator mode: TLS always), unchanged
against the AMQPS port, trusting only the generated CA (`connection_verify=`).

7.8.3 takes no port from the connection string: it connects to 5671, or, given
`custom_endpoint_address="sb://host:port"`, switches to AMQP over WebSockets (`wss://host:port`,
`_common/_configuration.py`) through uamqp's C WebSocket/TLS stack. The suite binds no fixed
port, so it runs that path on the ephemeral AMQPS port; the port sniffing answers it the same way
it answers plain AMQPS. Runs from scripts/tls-tests.sh in its own venv (.venv-tls78)."""

import uuid

import pytest

uamqp = pytest.importorskip("uamqp")
from azure.servicebus import ServiceBusClient, ServiceBusMessage  # noqa: E402


def create_queue(server, name):
    import urllib.request

    body = (
        '<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml">'
        '<QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"/>'
        "</content></entry>"
    )
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.ports['http']}/{name}",
        data=body.encode(),
        method="PUT",
        headers={"Content-Type": "application/atom+xml"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201


def client(server, ca):
    port = server.ports["amqps"]
    return ServiceBusClient.from_connection_string(
        server.conn_str(port, emulator=False),
        connection_verify=ca,
        custom_endpoint_address=f"sb://localhost:{port}",
        retry_total=0,
    )


def test_send_receive_settle(server):
    q = "q" + uuid.uuid4().hex[:8]
    create_queue(server, q)
    with client(server, server.ca) as c:
        with c.get_queue_sender(q) as sender:
            sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(3)])
        with c.get_queue_receiver(q, max_wait_time=10) as receiver:
            got = []
            while len(got) < 3:
                batch = receiver.receive_messages(max_message_count=3, max_wait_time=10)
                assert batch, "messages missing"
                got += batch
            assert sorted(str(m) for m in got) == ["m0", "m1", "m2"]
            for m in got:
                receiver.complete_message(m)
            assert receiver.peek_messages(max_message_count=5) == []


def test_wrong_ca_fails(server, wrong_ca):
    q = "q" + uuid.uuid4().hex[:8]
    create_queue(server, q)
    with client(server, wrong_ca) as c:
        with pytest.raises(Exception):
            with c.get_queue_sender(q) as sender:
                sender.send_messages(ServiceBusMessage("x"))


def test_completing_a_deferred_message_is_answered(server):
    """Issue 16 item 2, with the client that found it: uamqp-based 7.8.3 settles a deferred
    message through `$management` (`update-disposition`) with a `lock-tokens` array it encodes
    its own way. Before the fix the request was dropped and the client waited forever; now
    every request whose message-id can be read gets an answer (success, or a 400 the SDK
    raises), well within the client's timeout."""
    import time

    from azure.servicebus.exceptions import ServiceBusError

    q = "q" + uuid.uuid4().hex[:8]
    create_queue(server, q)
    with client(server, server.ca) as c:
        with c.get_queue_sender(q) as sender:
            sender.send_messages(ServiceBusMessage("defer me"))
        with c.get_queue_receiver(q, max_wait_time=10) as receiver:
            (m,) = receiver.receive_messages(max_message_count=1, max_wait_time=10)
            seq = m.sequence_number
            receiver.defer_message(m)
            (deferred,) = receiver.receive_deferred_messages([seq])
            started = time.monotonic()
            try:
                receiver.complete_message(deferred)
                completed = True
            except ServiceBusError as e:  # a 400 answer, raised by the SDK
                completed = False
                print("complete_message raised:", type(e).__name__, e)
            assert time.monotonic() - started < 10, "the request must be answered, not dropped"
        if completed:
            with c.get_queue_receiver(q, max_wait_time=5) as receiver:
                assert receiver.receive_deferred_messages([seq]) == []
