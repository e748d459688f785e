"""Data clients over TLS and WebSockets, unchanged, trusting only the generated CA.

- AMQPS without `UseDevelopmentEmulator` (the SDK then uses TLS: `SSLTransport` with
  `use_tls=True`, azure-servicebus 7.15 `_pyamqp/_transport.py`), on a custom port: the SDK
  takes the port from `custom_endpoint_address` (`_pyamqp/_connection.py`: `custom_port`),
  not from the connection string's Endpoint.
- AMQP over WebSockets (`TransportType.AmqpOverWebsocket`): 7.15 opens `ws://host/` (port 80)
  in emulator mode and `wss://host/` (443) otherwise (`WebSocketTransport.connect`), and appends
  `/$servicebus/websocket`; `custom_endpoint_address="sb://localhost:PORT"` names the port
  (`_common/_configuration.py`). Subprotocol `AMQPWSB10`.
"""

import ssl
import uuid

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    TransportType,
)
from azure.servicebus.management import ServiceBusAdministrationClient


def make_queue(server, **kw):
    q = "q" + uuid.uuid4().hex[:8]
    admin = ServiceBusAdministrationClient.from_connection_string(
        server.conn_str(server.ports["https"]), connection_verify=server.ca
    )
    with admin:
        admin.create_queue(q, **kw)
    return q


def roundtrip(client, q, session=False):
    sid = "s1" if session else None
    with client.get_queue_sender(q) as sender:
        sender.send_messages([ServiceBusMessage(f"m{i}", session_id=sid) for i in range(3)])
    kw = {"session_id": NEXT_AVAILABLE_SESSION} if session else {}
    with client.get_queue_receiver(q, max_wait_time=10, **kw) as receiver:
        got = receiver.receive_messages(max_message_count=3, max_wait_time=10)
        while len(got) < 3:
            more = receiver.receive_messages(max_message_count=3, max_wait_time=10)
            assert more, "messages missing"
            got += more
        assert sorted(str(m) for m in got) == ["m0", "m1", "m2"]
        if session:
            assert receiver.session.session_id == "s1"
        receiver.abandon_message(got[0])
        for m in got[1:]:
            receiver.complete_message(m)
        again = receiver.receive_messages(max_message_count=1, max_wait_time=10)
        assert [str(m) for m in again] == [str(got[0])] and again[0].delivery_count == 1
        receiver.complete_message(again[0])
        assert receiver.peek_messages(max_message_count=5) == []


@pytest.mark.parametrize("port_kind", ["amqps", "amqp", "https"])
def test_amqps_without_emulator_flag(server, port_kind):
    """The production code path (TLS) against a custom port: the AMQPS port, and the AMQP and
    HTTPS ports, which sniff TLS and then AMQP inside it."""
    q = make_queue(server)
    conn = server.conn_str(server.ports[port_kind], emulator=False)
    with ServiceBusClient.from_connection_string(
        conn,
        transport_type=TransportType.Amqp,
        custom_endpoint_address=f"sb://localhost:{server.ports[port_kind]}",
        connection_verify=server.ca,
    ) as client:
        roundtrip(client, q)


def test_amqps_wrong_ca_fails(server, wrong_ca):
    q = make_queue(server)
    conn = server.conn_str(server.ports["amqps"], emulator=False)
    with ServiceBusClient.from_connection_string(
        conn,
        transport_type=TransportType.Amqp,
        custom_endpoint_address=f"sb://localhost:{server.ports['amqps']}",
        connection_verify=wrong_ca,
        retry_total=0,
    ) as client:
        with pytest.raises(Exception) as e:
            with client.get_queue_sender(q) as sender:
                sender.send_messages(ServiceBusMessage("x"))
    assert "CERTIFICATE_VERIFY_FAILED" in repr(e.value) or isinstance(e.value.__cause__, ssl.SSLError) or "certificate" in repr(e.value).lower(), repr(e.value)


@pytest.mark.parametrize(
    "port_kind,emulator",
    [("http", True), ("amqp", True), ("https", False), ("amqps", False)],
)
@pytest.mark.parametrize("session", [False, True])
def test_amqp_over_websockets(server, port_kind, emulator, session):
    """ws:// (emulator mode) on the HTTP and AMQP ports, wss:// on the HTTPS and AMQPS ports."""
    q = make_queue(server, requires_session=session)
    port = server.ports[port_kind]
    conn = server.conn_str(port, emulator=emulator)
    with ServiceBusClient.from_connection_string(
        conn,
        transport_type=TransportType.AmqpOverWebsocket,
        custom_endpoint_address=f"sb://localhost:{port}",
        connection_verify=server.ca,
    ) as client:
        roundtrip(client, q, session=session)
