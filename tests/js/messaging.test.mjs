// The official JavaScript SDK (@azure/service-bus) against the real localzure binary: the
// everyday queue operations a Node application uses, beyond what tests/python covers for the
// Python SDK (settlement, dead-lettering, deferral, scheduling, lock renewal, sessions and
// their state, receive-and-delete), so the JavaScript client is known to work unchanged too.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ServiceBusClient } from "@azure/service-bus";
import {
  CLIENT_OPTIONS,
  SB_NS,
  connectionString,
  put,
  receiveAll,
  startServer,
  stopServer,
} from "./server.mjs";

let server;
let client;

before(async () => {
  server = await startServer();
  client = new ServiceBusClient(connectionString(server), CLIENT_OPTIONS);
});

after(async () => {
  await client?.close();
  if (server) await stopServer(server);
});

let queues = 0;
async function queue(fields = "") {
  const name = `jsq${++queues}`;
  await put(server, name, `<QueueDescription xmlns="${SB_NS}">${fields}</QueueDescription>`);
  return name;
}

test("peek-lock: complete, abandon (redelivered), dead-letter with reason, renew lock", async () => {
  const q = await queue();
  const sender = client.createSender(q);
  await sender.sendMessages([
    { body: "one", messageId: "1", applicationProperties: { n: 1 } },
    { body: "two", messageId: "2" },
    { body: "three", messageId: "3" },
  ]);
  const receiver = client.createReceiver(q);
  const got = await receiveAll(receiver, 3, { complete: false });
  assert.deepEqual(got.map((m) => m.body), ["one", "two", "three"]);
  assert.equal(got[0].applicationProperties.n, 1);
  assert.ok(got[0].sequenceNumber.toNumber() >= 1);

  const before = got[0].lockedUntilUtc.getTime();
  // Renewing later than the receive moves the lock strictly later (a no-op renew fails).
  await new Promise((r) => setTimeout(r, 50));
  const renewed = await receiver.renewMessageLock(got[0]);
  assert.ok(renewed.getTime() > before, `renewed ${renewed.toISOString()} not after ${before}`);
  await receiver.completeMessage(got[0]);
  await receiver.abandonMessage(got[1]);
  await receiver.deadLetterMessage(got[2], {
    deadLetterReason: "bad",
    deadLetterErrorDescription: "not wanted",
  });

  const again = await receiveAll(receiver, 1);
  assert.equal(again[0].body, "two");
  assert.equal(again[0].deliveryCount, 1);

  const dlq = client.createReceiver(q, { subQueueType: "deadLetter" });
  const dead = await receiveAll(dlq, 1);
  assert.equal(dead[0].body, "three");
  assert.equal(dead[0].deadLetterReason, "bad");
  assert.equal(dead[0].deadLetterErrorDescription, "not wanted");
  assert.deepEqual(await receiver.peekMessages(10), []);
  await Promise.all([dlq.close(), receiver.close(), sender.close()]);
});

test("deferral, scheduling and cancelling, peek", async () => {
  const q = await queue();
  const sender = client.createSender(q);
  await sender.sendMessages({ body: "later", messageId: "d" });
  const receiver = client.createReceiver(q);
  const [m] = await receiveAll(receiver, 1, { complete: false });
  await receiver.deferMessage(m);
  const [deferred] = await receiver.receiveDeferredMessages([m.sequenceNumber]);
  assert.equal(deferred.body, "later");
  await receiver.completeMessage(deferred);

  const inAnHour = new Date(Date.now() + 3_600_000);
  const [kept] = await sender.scheduleMessages({ body: "kept", messageId: "k" }, inAnHour);
  const [dropped] = await sender.scheduleMessages({ body: "dropped", messageId: "x" }, inAnHour);
  await sender.cancelScheduledMessages([dropped]);
  const peeked = await receiver.peekMessages(10);
  assert.deepEqual(peeked.map((p) => [p.body, p.state]), [["kept", "scheduled"]]);
  assert.equal(peeked[0].sequenceNumber.toNumber(), kept.toNumber());
  assert.deepEqual(await receiver.receiveMessages(1, { maxWaitTimeInMs: 300 }), []);
  await Promise.all([receiver.close(), sender.close()]);
});

test("sessions: accept by id, in-order delivery, session state, next available", async () => {
  const q = await queue("<RequiresSession>true</RequiresSession>");
  const sender = client.createSender(q);
  await sender.sendMessages([
    { body: "a1", sessionId: "a" },
    { body: "b1", sessionId: "b" },
    { body: "a2", sessionId: "a" },
  ]);
  const a = await client.acceptSession(q, "a");
  const fromA = await receiveAll(a, 2);
  assert.deepEqual(fromA.map((m) => m.body), ["a1", "a2"]);
  await a.setSessionState("checkpoint-2");
  assert.equal((await a.getSessionState()).toString(), "checkpoint-2");
  await a.close();

  const next = await client.acceptNextSession(q);
  assert.equal(next.sessionId, "b");
  const fromB = await receiveAll(next, 1);
  assert.equal(fromB[0].body, "b1");
  await Promise.all([next.close(), sender.close()]);
});

test("receive-and-delete removes on delivery", async () => {
  const q = await queue();
  const sender = client.createSender(q);
  const batch = await sender.createMessageBatch();
  for (let i = 0; i < 5; i++) assert.ok(batch.tryAddMessage({ body: `m${i}` }));
  await sender.sendMessages(batch);
  const receiver = client.createReceiver(q, { receiveMode: "receiveAndDelete" });
  const got = await receiveAll(receiver, 5, { complete: false });
  assert.deepEqual(got.map((m) => m.body), ["m0", "m1", "m2", "m3", "m4"]);
  assert.deepEqual(await receiver.peekMessages(10), []);
  await Promise.all([receiver.close(), sender.close()]);
});
