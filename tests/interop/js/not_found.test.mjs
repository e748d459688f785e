// Issue 16 item 4 with the JavaScript SDK (rhea): a link to an entity that does not exist is
// refused as the service does (attach with a null terminus, then detach with amqp:not-found),
// which @azure/service-bus reports as code "MessagingEntityNotFound" for senders and receivers.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ServiceBusClient } from "@azure/service-bus";
import { startServer, connectionString } from "../../js/server.mjs";

const OPTIONS = { retryOptions: { maxRetries: 0, timeoutInMs: 10_000 } };

test("send and receive on a missing queue fail with MessagingEntityNotFound", async () => {
  const server = await startServer();
  const client = new ServiceBusClient(connectionString(server), OPTIONS);
  try {
    const sender = client.createSender("no-such-queue");
    await assert.rejects(sender.sendMessages({ body: "x" }), (e) => {
      assert.equal(e.code, "MessagingEntityNotFound", String(e));
      return true;
    });
    const receiver = client.createReceiver("no-such-queue");
    await assert.rejects(receiver.receiveMessages(1, { maxWaitTimeInMs: 2_000 }), (e) => {
      assert.equal(e.code, "MessagingEntityNotFound", String(e));
      return true;
    });
  } finally {
    await client.close();
    server.proc.kill("SIGTERM");
  }
});
