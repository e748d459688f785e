"""`GET /metrics` parsed with prometheus_client's own text parser, values compared with what the
test did over REST; JSON logs (`LOCALZURE_LOG_FORMAT=json`) parsed line by line.

Each test starts the real binary on ephemeral ports with a temporary data directory, through
tests/python/conftest.py's `Server` (which also checks the exit is clean).
"""

import json
import os
import sys
import tempfile
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

# The SDK suite's fixtures start the binary (ephemeral ports, temporary data dir, clean-exit check).
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import conftest  # noqa: E402


class Server(conftest.Server):
    def __init__(self, env_extra=None):
        # Persistent, so the journal and snapshot metrics have something to measure.
        env = {"LOCALZURE_STORAGE_TYPE": "sqlite", **(env_extra or {})}
        super().__init__(tempfile.mkdtemp(prefix="localzure-metrics-"), env)
        self.url = f"http://127.0.0.1:{self.http_port}"

    def send(self, queue, body, props=None):
        headers = {"Content-Type": "text/plain"}
        if props is not None:
            headers["BrokerProperties"] = json.dumps(props)
        r = requests.post(f"{self.url}/{queue}/messages", data=body, headers=headers, timeout=10)
        assert r.status_code == 201, r.text

    def lock(self, queue):
        """Peek-lock one message: (sequence number, lock token)."""
        r = requests.post(f"{self.url}/{queue}/messages/head?timeout=5", timeout=10)
        assert r.status_code == 201, (r.status_code, r.text)
        bp = json.loads(r.headers["BrokerProperties"])
        return bp["SequenceNumber"], bp["LockToken"]

    def metrics(self):
        r = requests.get(f"{self.url}/metrics", timeout=10)
        assert r.status_code == 200, r.text
        samples = {}
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def test_counters_and_gauges_follow_rest_traffic(server):
    q = server.create_queue(MaxDeliveryCount=1)
    for i in range(5):
        server.send(q, f"m{i}")
    # A scheduled message (one hour ahead): sent and scheduled, not active.
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3600))
    server.send(q, "later", {"ScheduledEnqueueTimeUtc": later})
    seq, token = server.lock(q)
    assert requests.delete(f"{server.url}/{q}/messages/{seq}/{token}", timeout=10).status_code == 200
    seq, token = server.lock(q)
    # Abandon with MaxDeliveryCount=1: the message is dead-lettered.
    assert requests.put(f"{server.url}/{q}/messages/{seq}/{token}", timeout=10).status_code == 200
    server.lock(q)  # stays locked: received, neither completed nor settled

    m = server.metrics()
    counter = lambda event: value(m, "localzure_messages_total", entity=q, event=event)
    assert counter("sent") == 6
    assert counter("scheduled") == 1
    assert counter("received") == 3
    assert counter("completed") == 1
    assert counter("abandoned") == 1
    assert counter("dead_lettered") == 1
    gauge = lambda name: value(m, name, entity=q, kind="queue")
    # 6 sent - 1 completed - 1 dead-lettered - 1 scheduled = 3 active (a locked message is
    # active, as Azure's ActiveMessageCount counts it).
    assert gauge("localzure_entity_active_messages") == 3
    assert gauge("localzure_entity_scheduled_messages") == 1
    assert gauge("localzure_entity_dead_lettered_messages") == 1
    assert gauge("localzure_entity_deferred_messages") == 0
    assert gauge("localzure_entity_size_bytes") > 0
    assert value(m, "localzure_operations_total", op="Send") >= 6
    assert value(m, "localzure_request_duration_seconds_count", plane="http", operation="send") == 6
    assert value(m, "localzure_request_duration_seconds_count", plane="http", operation="complete") == 1
    assert value(m, "localzure_amqp_connections") == 0
    # The scrape itself is served on an open HTTP connection.
    assert value(m, "localzure_http_connections") >= 1
    # Every change waited for a journal flush.
    assert value(m, "localzure_journal_commit_seconds_count") >= 6

    # Snapshots are timed.
    r = requests.post(f"{server.url}/$admin/snapshot", headers={"X-LocalZure-Admin": "1"}, timeout=30)
    assert r.status_code == 200, r.text
    assert value(server.metrics(), "localzure_snapshot_duration_seconds_count") >= 1


def test_entity_and_admin_actions_are_logged_as_json():
    s = Server({"LOCALZURE_LOG_FORMAT": "json", "LOCALZURE_ACCESS_LOG": "true"})
    try:
        q = s.create_queue()
        r = requests.post(f"{s.url}/$admin/purge", headers={"X-LocalZure-Admin": "1"}, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        s.stop()
    lines = [json.loads(line) for line in s.read_log().splitlines() if line.strip()]
    for obj in lines:
        assert {"timestamp", "level", "target", "fields"} <= obj.keys(), obj
    messages = [o["fields"].get("message", "") for o in lines]
    assert "Emulator Service is Successfully Up!" in messages
    created = [o for o in lines if o["fields"].get("message", "").startswith(f"created queue {q}")]
    assert created and created[0]["level"] == "INFO"
    assert created[0]["fields"]["plane"] == "http"
    assert created[0]["fields"]["peer"].startswith("127.0.0.1:")
    assert any(o["fields"].get("action") == "purge" for o in lines)
    assert any(o["fields"].get("path") == f"/{q}" and o["fields"].get("status") == 201 for o in lines)


def test_metrics_need_a_token_from_outside_when_sas_is_on():
    """With SAS on, loopback callers still scrape without a token (the test is loopback)."""
    s = Server({"LOCALZURE_SAS_KEY_NAME": "RootManageSharedAccessKey", "LOCALZURE_SAS_KEY": "k"})
    try:
        assert requests.get(f"{s.url}/metrics", timeout=10).status_code == 200
        assert requests.get(f"{s.url}/$Resources/Queues", timeout=10).status_code == 401
    finally:
        s.stop()


def test_amqp_connections_links_and_latency_with_the_python_sdk(server):
    """The official SDK (pure-Python AMQP): its connection and links are counted while open,
    its send is timed on the AMQP plane and counted, and closing uncounts them."""
    from azure.servicebus import ServiceBusClient, ServiceBusMessage

    q = server.create_queue()
    with ServiceBusClient.from_connection_string(server.conn_str) as client:
        with client.get_queue_sender(q) as sender:
            sender.send_messages(ServiceBusMessage("over amqp"))
            m = server.metrics()
            assert value(m, "localzure_amqp_connections") >= 1
            # The CBS pair and the sender link at least.
            assert value(m, "localzure_amqp_links") >= 1
            assert value(m, "localzure_request_duration_seconds_count", plane="amqp", operation="send") == 1
            assert value(m, "localzure_messages_total", entity=q, event="sent") == 1
        with client.get_queue_receiver(q, max_wait_time=5) as receiver:
            for msg in receiver.receive_messages(max_message_count=1, max_wait_time=5):
                receiver.complete_message(msg)
    deadline = time.time() + 10
    while True:
        m = server.metrics()
        if value(m, "localzure_amqp_connections") == 0 and value(m, "localzure_amqp_links") == 0:
            break
        assert time.time() < deadline, "AMQP gauges not back to 0 after close"
        time.sleep(0.05)
    assert value(m, "localzure_messages_total", entity=q, event="received") == 1
    assert value(m, "localzure_messages_total", entity=q, event="completed") == 1


def test_expiry_counts_expired_and_dead_lettered(server):
    q = server.create_queue(DeadLetteringOnMessageExpiration="true")
    server.send(q, "short-lived", {"TimeToLive": 1})
    deadline = time.time() + 15
    while value(server.metrics(), "localzure_messages_total", entity=q, event="expired") != 1:
        assert time.time() < deadline, "the message never expired"
        time.sleep(0.1)
    m = server.metrics()
    assert value(m, "localzure_messages_total", entity=q, event="dead_lettered") == 1
    assert value(m, "localzure_entity_dead_lettered_messages", entity=q, kind="queue") == 1
    assert value(m, "localzure_entity_active_messages", entity=q, kind="queue") == 0
