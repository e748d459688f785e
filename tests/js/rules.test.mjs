// The official JavaScript SDK (@azure/service-bus) against the real localzure binary, for what
// the Python SDK cannot drive: a subscription's rules over AMQP (ServiceBusRuleManager:
// com.microsoft:add-rule / enumerate-rules / remove-rule on the $management node).

import { test } from "node:test";
import assert from "node:assert/strict";
import { SB_NS, put, receiveAll, withServer } from "./server.mjs";

test("rule manager: create, list and delete rules; the rules route messages", () =>
  withServer(async (server, client) => {
    await put(server, "orders", `<TopicDescription xmlns="${SB_NS}"/>`);
    await put(server, "orders/subscriptions/audit", `<SubscriptionDescription xmlns="${SB_NS}"/>`);
    const rules = client.createRuleManager("orders", "audit");

    // A new subscription has only $Default (TrueFilter, which the SDK shows as 1=1).
    let listed = [];
    for await (const r of rules.listRules()) listed.push(r);
    assert.deepEqual(
      listed.map((r) => [r.name, r.filter.sqlExpression]),
      [["$Default", "1=1"]],
    );

    await rules.createRule("red", { sqlExpression: "color = 'red'" }, {
      sqlExpression: "SET tagged = 'yes'",
    });
    await rules.createRule("by-subject", {
      subject: "urgent",
      applicationProperties: { region: "eu" },
    });
    await assert.rejects(
      rules.createRule("red", { sqlExpression: "1=1" }),
      (e) => e.code === "MessagingEntityAlreadyExists",
    );
    await rules.deleteRule("$Default");

    listed = [];
    for await (const r of rules.listRules()) listed.push(r);
    assert.deepEqual(
      listed.map((r) => r.name),
      ["by-subject", "red"],
    );
    const [bySubject, red] = listed;
    assert.equal(bySubject.filter.subject, "urgent");
    assert.deepEqual(bySubject.filter.applicationProperties, { region: "eu" });
    assert.equal(red.filter.sqlExpression, "color = 'red'");
    assert.equal(red.action.sqlExpression, "SET tagged = 'yes'");

    // Only the red message and the urgent EU one reach the subscription; the action ran.
    const sender = client.createSender("orders");
    await sender.sendMessages([
      { body: "a", messageId: "red", applicationProperties: { color: "red" } },
      { body: "b", messageId: "blue", applicationProperties: { color: "blue" } },
      {
        body: "c",
        messageId: "urgent-eu",
        subject: "urgent",
        applicationProperties: { color: "blue", region: "eu" },
      },
      { body: "d", messageId: "urgent-us", subject: "urgent", applicationProperties: { region: "us" } },
    ]);
    const receiver = client.createReceiver("orders", "audit");
    const got = await receiveAll(receiver, 2);
    assert.deepEqual(got.map((m) => m.messageId).sort(), ["red", "urgent-eu"]);
    const redMessage = got.find((m) => m.messageId === "red");
    assert.equal(redMessage.applicationProperties.tagged, "yes");
    assert.deepEqual(await receiver.receiveMessages(1, { maxWaitTimeInMs: 500 }), []);
    await receiver.close();
    await sender.close();
  }),
);
