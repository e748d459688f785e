// The official JavaScript SDK (@azure/service-bus) against the real localzure binary, for what
// the Python SDK cannot drive: a subscription's rules over AMQP (ServiceBusRuleManager:
// com.microsoft:add-rule / enumerate-rules / remove-rule on the $management node).
// The binary is started on ephemeral ports with a temporary data dir; entities are created
// through the REST ATOM API, as tests/python/conftest.py does.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { ServiceBusClient } from "@azure/service-bus";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BINARY =
  process.env.LOCALZURE_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "debug", "localzure");
const ATOM_NS = "http://www.w3.org/2005/Atom";
const SB_NS = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";

/** Starts the binary and waits (polling its log) until it reports both ports. */
async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), "localzure-js-"));
  const logPath = join(dir, "server.log");
  const log = openSync(logPath, "w");
  const proc = spawn(BINARY, ["start"], {
    cwd: dir,
    stdio: ["ignore", log, log],
    env: {
      ...process.env,
      LOCALZURE_HTTP_PORT: "0",
      LOCALZURE_AMQP_PORT: "0",
      LOCALZURE_LOG: "info",
    },
  });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const text = readFileSync(logPath, "utf8");
    const http = /listening on http:\/\/[^:]+:(\d+)/.exec(text);
    const amqp = /AMQP listening on amqp:\/\/[^:]+:(\d+)/.exec(text);
    if (http && amqp) {
      return { proc, http: Number(http[1]), amqp: Number(amqp[1]) };
    }
    if (proc.exitCode !== null) {
      throw new Error(`localzure exited early:\n${text}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill("SIGKILL");
  throw new Error("localzure did not report its ports");
}

async function put(server, path, description) {
  const body = `<entry xmlns="${ATOM_NS}"><content type="application/xml">${description}</content></entry>`;
  const r = await fetch(`http://127.0.0.1:${server.http}/${path}`, {
    method: "PUT",
    body,
    headers: { "content-type": "application/atom+xml" },
  });
  assert.equal(r.status, 201, `PUT ${path}: ${await r.text()}`);
}

function connectionString(server) {
  return (
    `Endpoint=sb://localhost:${server.amqp};SharedAccessKeyName=RootManageSharedAccessKey;` +
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
  );
}

/** Receives until `n` messages arrived or the wait is over; completes each. */
async function receiveAll(receiver, n) {
  const got = [];
  const deadline = Date.now() + 10_000;
  while (got.length < n && Date.now() < deadline) {
    const batch = await receiver.receiveMessages(n - got.length, { maxWaitTimeInMs: 1000 });
    for (const m of batch) {
      await receiver.completeMessage(m);
      got.push(m);
    }
  }
  return got;
}

test("rule manager: create, list and delete rules; the rules route messages", async () => {
  const server = await startServer();
  const client = new ServiceBusClient(connectionString(server));
  try {
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
  } finally {
    await client.close();
    server.proc.kill("SIGTERM");
  }
});
