"""The SDK's ServiceBusAdministrationClient, unchanged, over HTTPS: it builds
`https://{host[:port]}` from the connection string (azure-servicebus 7.15,
`management/_management_client.py`), so with the plain emulator connection string it speaks TLS
to the AMQP port, and to the HTTPS port when given that one. Trusts only the generated CA
(`connection_verify=`, azure-core's requests transport)."""

import uuid

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import ServiceBusAdministrationClient, SqlRuleFilter


def name(prefix):
    return prefix + uuid.uuid4().hex[:8]


@pytest.mark.parametrize("port_kind", ["amqp", "https"])
def test_admin_client_full_flow(server, port_kind):
    conn = server.conn_str(server.ports[port_kind])
    admin = ServiceBusAdministrationClient.from_connection_string(conn, connection_verify=server.ca)
    with admin:
        ns = admin.get_namespace_properties()
        assert ns.name

        q = name("q")
        admin.create_queue(q, max_delivery_count=7)
        props = admin.get_queue(q)
        assert props.max_delivery_count == 7
        props.max_delivery_count = 9
        admin.update_queue(props)
        assert admin.get_queue(q).max_delivery_count == 9

        extra = [name("p") for _ in range(3)]
        for e in extra:
            admin.create_queue(e)
        # The ATOM feed's paging ($skip/$top), page by page.
        pages = admin.list_queues().by_page()
        listed = [x.name for page in pages for x in page]
        assert {q, *extra} <= set(listed)

        # Runtime properties after sends (data client on the plain AMQP port).
        with ServiceBusClient.from_connection_string(server.conn_str(server.ports["amqp"])) as sb:
            with sb.get_queue_sender(q) as sender:
                sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(3)])
        rt = admin.get_queue_runtime_properties(q)
        assert rt.active_message_count == 3
        assert any(r.name == q for r in admin.list_queues_runtime_properties())

        t = name("t")
        admin.create_topic(t)
        tp = admin.get_topic(t)
        tp.default_message_time_to_live = tp.default_message_time_to_live
        admin.update_topic(tp)
        assert t in [x.name for x in admin.list_topics()]
        admin.create_subscription(t, "s1", max_delivery_count=4)
        sp = admin.get_subscription(t, "s1")
        assert sp.max_delivery_count == 4
        sp.max_delivery_count = 5
        admin.update_subscription(t, sp)
        assert admin.get_subscription(t, "s1").max_delivery_count == 5
        assert [s.name for s in admin.list_subscriptions(t)] == ["s1"]

        admin.create_rule(t, "s1", "r1", filter=SqlRuleFilter("color = 'red'"))
        rp = admin.get_rule(t, "s1", "r1")
        assert "red" in rp.filter.sql_expression
        rp.filter = SqlRuleFilter("color = 'blue'")
        admin.update_rule(t, "s1", rp)
        assert "blue" in admin.get_rule(t, "s1", "r1").filter.sql_expression
        assert "r1" in [r.name for r in admin.list_rules(t, "s1")]
        with ServiceBusClient.from_connection_string(server.conn_str(server.ports["amqp"])) as sb:
            with sb.get_topic_sender(t) as sender:
                sender.send_messages(ServiceBusMessage("x", application_properties={"color": "blue"}))
        assert admin.get_subscription_runtime_properties(t, "s1").active_message_count == 1
        assert admin.get_topic_runtime_properties(t).name == t

        admin.delete_rule(t, "s1", "r1")
        admin.delete_subscription(t, "s1")
        admin.delete_topic(t)
        for e in [q, *extra]:
            admin.delete_queue(e)
        assert q not in [x.name for x in admin.list_queues()]


def test_wrong_ca_fails_verification(server, wrong_ca):
    """The client really verifies: a CA that did not sign the certificate is refused."""
    from azure.core.exceptions import ServiceRequestError

    admin = ServiceBusAdministrationClient.from_connection_string(
        server.conn_str(server.ports["https"]), connection_verify=wrong_ca, retry_total=0
    )
    with pytest.raises(ServiceRequestError) as e:
        admin.get_namespace_properties()
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value), e.value
