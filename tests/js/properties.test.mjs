// The official JavaScript SDK (@azure/service-bus) against the real localzure binary: what a
// message carries (system properties, typed application properties, JSON / binary / text
// bodies, TTL) comes back as sent, and a topic fans out to each subscription.

import { test } from "node:test";
import assert from "node:assert/strict";
import { SB_NS, put, receiveAll, withServer } from "./server.mjs";

test("message properties and body types round-trip; topic fan-out", () =>
  withServer(async (server, client) => {
    await put(server, "pq", `<QueueDescription xmlns="${SB_NS}"/>`);
    const sender = client.createSender("pq");
    const when = new Date("2030-01-02T03:04:05.678Z");
    await sender.sendMessages([
      {
        body: { hello: "world", n: [1, 2, 3] },
        messageId: "m1",
        correlationId: "c1",
        contentType: "application/json",
        subject: "subj",
        to: "dest",
        replyTo: "rq",
        timeToLive: 60_000,
        applicationProperties: { s: "str", i: 42, f: 1.5, b: true, d: when, neg: -7 },
      },
      { body: Buffer.from([0, 1, 2, 255]), messageId: "m2" },
      { body: "plain", messageId: "m3" },
    ]);
    const receiver = client.createReceiver("pq");
    const got = await receiveAll(receiver, 3);
    const [a, b, c] = got;
    assert.deepEqual(a.body, { hello: "world", n: [1, 2, 3] });
    assert.equal(a.messageId, "m1");
    assert.equal(a.correlationId, "c1");
    assert.equal(a.contentType, "application/json");
    assert.equal(a.subject, "subj");
    assert.equal(a.to, "dest");
    assert.equal(a.replyTo, "rq");
    assert.equal(a.timeToLive, 60_000);
    assert.equal(a.applicationProperties.s, "str");
    assert.equal(a.applicationProperties.i, 42);
    assert.equal(a.applicationProperties.f, 1.5);
    assert.equal(a.applicationProperties.b, true);
    assert.equal(a.applicationProperties.neg, -7);
    assert.equal(new Date(a.applicationProperties.d).getTime(), when.getTime());
    assert.ok(a.enqueuedTimeUtc instanceof Date);
    assert.ok(a.expiresAtUtc instanceof Date);
    assert.equal(a.expiresAtUtc.getTime() - a.enqueuedTimeUtc.getTime(), 60_000);
    assert.deepEqual([...b.body], [0, 1, 2, 255]);
    assert.equal(c.body, "plain");
    await receiver.close(); await sender.close();

    await put(server, "tp", `<TopicDescription xmlns="${SB_NS}"/>`);
    await put(server, "tp/subscriptions/s1", `<SubscriptionDescription xmlns="${SB_NS}"/>`);
    await put(server, "tp/subscriptions/s2", `<SubscriptionDescription xmlns="${SB_NS}"/>`);
    const ts = client.createSender("tp");
    await ts.sendMessages({ body: "fan", messageId: "f" });
    for (const sub of ["s1", "s2"]) {
      const r = client.createReceiver("tp", sub);
      const [m] = await receiveAll(r, 1);
      assert.equal(m.body, "fan");
      await r.close();
    }
    await ts.close();
  }),
);
