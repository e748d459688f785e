"""azure-servicebus 7.8.3, the last uamqp-based release (no emulator mode: TLS always), unchanged
against the AMQPS port, trusting only the generated CA (`connection_verify=`).

7.8.3 takes no port from the connection string: it connects to 5671, or, given
`custom_endpoint_address="sb://host:port"`, switches to AMQP over WebSockets (`wss://host:port`,
`_common/_configuration.py`) through uamqp's C WebSocket/TLS stack. Both paths run here:
- plain AMQPS on 5671 itself, exactly as 7.8.3 is used against Azure (connection string only):
  the server binds a random loopback address 127.x.y.z (5671 on it cannot collide with another
  test or service on 127.0.0.1; another address is tried if it is taken) and names it in its
  certificate (`LOCALZURE_TLS_NAMES`);
- AMQP over WebSockets on the ephemeral AMQPS port, which the port sniffing answers the same way.
Runs from scripts/tls-tests.sh in its own venv (.venv-tls78)."""

import os
import random
import tempfile
import uuid

import pytest

uamqp = pytest.importorskip("uamqp")
from azure.servicebus import ServiceBusClient, ServiceBusMessage  # noqa: E402


def create_queue(server, name, host="127.0.0.1"):
    import urllib.request

    body = (
        '<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml">'
        '<QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"/>'
        "</content></entry>"
    )
    req = urllib.request.Request(
        f"http://{host}:{server.ports['http']}/{name}",
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


def send_three_and_receive(c, q, receiver):
    """Sends m0..m2 to `q` and receives all three (peek-lock) with `receiver`."""
    with c.get_queue_sender(q) as sender:
        sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(3)])
    got = []
    while len(got) < 3:
        batch = receiver.receive_messages(max_message_count=3, max_wait_time=10)
        assert batch, "messages missing"
        got += batch
    assert sorted(str(m) for m in got) == ["m0", "m1", "m2"]
    return got


@pytest.fixture(scope="module")
def server_on_5671():
    """The binary with AMQPS on 5671 of a random 127.x.y.z (its other listeners ephemeral)."""
    from conftest import Server  # tests/tls/conftest.py

    last = None
    for _ in range(5):
        host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        try:
            s = Server(
                tempfile.mkdtemp(prefix="localzure-tls-5671-"),
                {
                    "LOCALZURE_HOST": host,
                    "LOCALZURE_AMQPS_PORT": "5671",
                    "LOCALZURE_TLS_NAMES": host,
                    # Debug lines name why a connection closed before routing (TLS alerts).
                    "LOCALZURE_LOG": "info,localzure::server=debug",
                },
            )
        except RuntimeError as e:  # the address was taken: try another
            last = e
            continue
        assert s.ports["amqps"] == 5671, s.ports
        s.host = host
        yield s
        s.stop()
        return
    pytest.fail(f"could not bind 5671 on a loopback address: {last}")


def test_plain_amqps_on_5671_with_the_connection_string_only(server_on_5671):
    """No custom endpoint, no port: 7.8.3 opens AMQPS to <host>:5671 (uamqp's TLS stack, not
    WebSockets) and verifies the server certificate against the generated CA."""
    s = server_on_5671
    q = "q" + uuid.uuid4().hex[:8]
    create_queue(s, q, host=s.host)
    conn = f"Endpoint=sb://{s.host}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE"
    with ServiceBusClient.from_connection_string(conn, connection_verify=s.ca, retry_total=0) as c:
        with c.get_queue_receiver(q, max_wait_time=10) as receiver:
            got = send_three_and_receive(c, q, receiver)
            receiver.complete_message(got[0])
            receiver.abandon_message(got[1])
            receiver.dead_letter_message(got[2], reason="r")
            (again,) = receiver.receive_messages(max_message_count=1, max_wait_time=10)
            assert str(again) == "m1" and again.delivery_count == 1
            receiver.complete_message(again)
        with c.get_queue_receiver(q, sub_queue="deadletter", max_wait_time=10) as dlq:
            (dead,) = dlq.receive_messages(max_message_count=1, max_wait_time=10)
            assert str(dead) == "m2" and dead.dead_letter_reason == "r"
            dlq.complete_message(dead)
    # Nothing else listens on that address's 443 (the WebSocket port 7.8.3 would use), so the
    # round trip above can only have gone over AMQPS to 5671.


def test_wrong_ca_fails_on_5671(server_on_5671, wrong_ca):
    """uamqp reports a failed TLS handshake on plain AMQPS only as an authorization timeout, so
    the proof that it verified (and refused) the certificate is the server's side: the
    handshake did not complete."""
    s = server_on_5671
    q = "q" + uuid.uuid4().hex[:8]
    create_queue(s, q, host=s.host)
    conn = f"Endpoint=sb://{s.host}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE"
    refused = "closed before routing: tls handshake"
    before = s.read_log().count(refused)
    with ServiceBusClient.from_connection_string(
        conn, connection_verify=wrong_ca, retry_total=0, auth_timeout=5
    ) as c:
        with pytest.raises(Exception):
            with c.get_queue_sender(q, auth_timeout=5) as sender:
                sender.send_messages(ServiceBusMessage("x"))
    # The client gave up inside the handshake (it closes without an alert); a client that did
    # not verify would have completed it and opened an AMQP connection.
    assert s.read_log().count(refused) > before, s.read_log()[-3000:]


def test_send_receive_settle(server):
    q = "q" + uuid.uuid4().hex[:8]
    create_queue(server, q)
    with client(server, server.ca) as c:
        with c.get_queue_receiver(q, max_wait_time=10) as receiver:
            got = send_three_and_receive(c, q, receiver)
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
