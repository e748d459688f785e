"""AMQP transactions with python-qpid-proton's own transaction API and its defaults (issue 22).

`Container.declare_transaction` attaches proton's controller (a sender to a coordinator target
with the `amqp:local-transactions` capability), `Transaction.send` puts `transactional-state`
on a transfer, `Transaction.accept` settles a delivery with `transactional-state { accepted }`
(unsettled until discharge: `settle_before_discharge=False`), `commit`/`abort` send a
`discharge`. After an abort, proton releases the deliveries it accepted in the transaction
(`Transaction._release_pending`), so they come back.

Covered: commit (the sends appear, the accepted message is gone), rollback (nothing sent is
visible, the accepted message is back), a delivery settled after its transactional accept was
answered (what the .NET and Java clients do), send-via (a sender attached to the received-from queue
with `com.microsoft:transfer-destination-address` naming another queue) and a transaction that
outlives the server's timeout (`LOCALZURE_TRANSACTION_TIMEOUT_MS`), whose commit is refused
with `amqp:transaction:timeout` and leaves nothing behind.
"""

import os
import re
import tempfile
import urllib.request

import pytest
from proton import Message, symbol
from proton.handlers import TransactionalClientHandler
from proton.reactor import Container, LinkOption
from proton.utils import BlockingConnection

from conftest import BINARY, Server

TIMEOUT = 10
VIA = "com.microsoft:transfer-destination-address"


def counts(server, queue):
    """The queue's CountDetails from its ATOM description (active, dead-letter, scheduled)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/{queue}", timeout=TIMEOUT) as r:
        xml = r.read().decode()
    return {
        name: int(re.search(rf"<d2p1:{name}MessageCount>(\d+)<", xml).group(1))
        for name in ("Active", "DeadLetter", "Scheduled")
    }


def seed(server, queue, ids):
    conn = BlockingConnection(server.amqp_url, timeout=TIMEOUT, allowed_mechs="ANONYMOUS")
    try:
        snd = conn.create_sender(queue)
        for i in ids:
            snd.send(Message(id=i, body=i))
    finally:
        conn.close()


def drain(server, queue, n):
    """Receives (and accepts) `n` messages; their ids in order."""
    conn = BlockingConnection(server.amqp_url, timeout=TIMEOUT, allowed_mechs="ANONYMOUS")
    try:
        rcv = conn.create_receiver(queue, credit=n)
        ids = []
        for _ in range(n):
            ids.append(rcv.receive(timeout=TIMEOUT).id)
            rcv.accept()
        return ids
    finally:
        conn.close()


class SendVia(LinkOption):
    """The protocol guide's send-via attach: target = the via entity, link property names the
    destination."""

    def __init__(self, destination):
        self.destination = destination

    def apply(self, link):
        link.properties = {symbol(VIA): self.destination}


class Scenario(TransactionalClientHandler):
    """One connection with proton's defaults: a receiver on `source` (one credit, so nothing
    released is redelivered to it), a sender, and a declared transaction. `work(txn)` runs once
    the transaction is declared and the message received; it ends with commit or abort."""

    def __init__(self, server, source, target, sender_options=None):
        super().__init__(prefetch=0, auto_accept=False)
        self.server, self.source, self.target = server, source, target
        self.sender_options = sender_options
        self.txn = self.incoming = None
        self.outcome = None
        self.condition = None
        self.failure = None
        self.watchdog = None

    # ----- proton events
    def on_start(self, event):
        self.container = event.container
        self.conn = event.container.connect(self.server.amqp_url, allowed_mechs="ANONYMOUS")
        self.receiver = event.container.create_receiver(self.conn, self.source)
        self.receiver.flow(1)
        self.sender = event.container.create_sender(self.conn, self.target, options=self.sender_options)
        event.container.declare_transaction(self.conn, handler=self)
        self.watchdog = event.container.schedule(TIMEOUT, self)

    def on_timer_task(self, event):
        self.failure = "timed out waiting for the scenario"
        self.container.stop()

    def on_message(self, event):
        self.incoming = event.delivery
        self._maybe_work()

    def on_transaction_declared(self, event):
        self.txn = event.transaction
        self._maybe_work()

    def on_transaction_committed(self, event):
        self._end("committed", event)

    def on_transaction_aborted(self, event):
        self._end("aborted", event)

    def on_transaction_commit_failed(self, event):
        self._end("commit-failed", event)

    def on_transaction_declare_failed(self, event):
        self._end("declare-failed", event)

    # ----- scenario
    def _maybe_work(self):
        if self.txn is not None and self.incoming is not None and self.outcome is None:
            self.work(self.txn)

    def _end(self, outcome, event):
        self.outcome = outcome
        cond = event.delivery.remote.condition if event.delivery else None
        self.condition = cond.name if cond else None
        if self.watchdog:
            self.watchdog.cancel()
        # Closed on the next turn of the reactor: proton releases the deliveries it accepted
        # in an aborted or failed transaction right after this callback returns, and those
        # releases must reach the server first.
        self.container.schedule(0, self.Close(self.conn))

    class Close:
        def __init__(self, conn):
            self.conn = conn

        def on_timer_task(self, event):
            self.conn.close()

    def work(self, txn):
        raise NotImplementedError

    def when(self, condition, then):
        """Runs `then` once `condition()` holds (checked every 50 ms on the reactor)."""
        outer = self

        class Poll:
            def on_timer_task(self, event):
                if condition():
                    then()
                else:
                    outer.container.schedule(0.05, self)

        self.container.schedule(0.05, Poll())

    def run(self):
        Container(self).run()
        assert self.failure is None, self.failure
        return self.outcome


def test_commit_makes_the_sends_visible_and_removes_the_accepted_message(server):
    q = server.create_queue()
    seed(server, q, ["in"])

    class Commit(Scenario):
        def work(self, txn):
            txn.send(self.sender, Message(id="out-1", body="out-1"))
            txn.send(self.sender, Message(id="out-2", body="out-2"))
            txn.accept(self.incoming)
            txn.commit()

    assert Commit(server, q, q).run() == "committed"
    assert counts(server, q)["Active"] == 2, "in is completed, both sends arrived"
    assert drain(server, q, 2) == ["out-1", "out-2"]
    assert counts(server, q)["Active"] == 0


def test_rollback_discards_the_sends_and_brings_the_accepted_message_back(server):
    q = server.create_queue()
    seed(server, q, ["in"])

    class Rollback(Scenario):
        def work(self, txn):
            txn.send(self.sender, Message(id="never", body="never"))
            txn.accept(self.incoming)
            txn.abort()

    assert Rollback(server, q, q).run() == "aborted"
    # Only the received message, back in the queue (proton released it after the abort).
    assert counts(server, q)["Active"] == 1
    assert drain(server, q, 1) == ["in"]
    assert counts(server, q)["Active"] == 0


def test_send_via_completes_from_one_queue_and_sends_to_another(server):
    a, b = server.create_queue(), server.create_queue()
    seed(server, a, ["in"])

    class Via(Scenario):
        def work(self, txn):
            txn.accept(self.incoming)
            txn.send(self.sender, Message(id="forwarded", body="forwarded"))
            txn.commit()

    # The sender attaches to `a` (the queue it received from) and names `b` as destination.
    assert Via(server, a, a, sender_options=SendVia(b)).run() == "committed"
    assert counts(server, a)["Active"] == 0, "completed in a"
    assert counts(server, b)["Active"] == 1, "sent via a to b"
    assert drain(server, b, 1) == ["forwarded"]


def test_settling_after_the_transactional_accept_is_not_a_second_settlement(server):
    # The .NET (Microsoft.Azure.Amqp) and Java (proton-j) clients settle a delivery locally
    # once the broker answered its transactional disposition, which repeats the
    # transactional state with settled=true. Proton does the same here by hand: the commit
    # must apply the one completion, not refuse a "second" one.
    q = server.create_queue()
    seed(server, q, ["in"])
    TRANSACTIONAL_STATE = 0x34

    class SettleAfterAnswer(Scenario):
        def work(self, txn):
            txn.send(self.sender, Message(id="out", body="out"))
            txn.accept(self.incoming)

            def settle_then_commit():
                self.incoming.settle()
                txn.commit()

            self.when(lambda: self.incoming.remote_state == TRANSACTIONAL_STATE, settle_then_commit)

    assert SettleAfterAnswer(server, q, q).run() == "committed"
    assert counts(server, q)["Active"] == 1, "in is completed, out arrived"
    assert drain(server, q, 1) == ["out"]


@pytest.fixture(scope="module")
def short_timeout_server():
    """A server whose transactions time out 400 ms after their first operation."""
    if not os.path.exists(BINARY):
        pytest.fail(f"localzure binary not found at {BINARY}; build it first (cargo build)")
    s = Server(
        tempfile.mkdtemp(prefix="localzure-interop-txn-"),
        env_extra={"LOCALZURE_TRANSACTION_TIMEOUT_MS": "400"},
    )
    yield s
    s.stop()


def test_a_transaction_past_the_timeout_is_rolled_back(short_timeout_server):
    server = short_timeout_server
    q = server.create_queue()
    seed(server, q, ["in"])

    class Late(Scenario):
        def work(self, txn):
            txn.send(self.sender, Message(id="late", body="late"))
            txn.accept(self.incoming)
            rolled_back = "transaction timed out and was rolled back"
            self.when(lambda: rolled_back in self.server.read_log(), txn.commit)

    late = Late(server, q, q)
    assert late.run() == "commit-failed"
    assert late.condition == "amqp:transaction:timeout"
    # Nothing of it applied: the send is absent; the received message is still there (proton
    # released it when the commit failed).
    assert counts(server, q)["Active"] == 1
    assert drain(server, q, 1) == ["in"]
