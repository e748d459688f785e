// @azure/service-bus 7.9.5, unchanged, against the localzure binary over TLS, trusting only the
// generated CA through NODE_EXTRA_CA_CERTS (read by Node at start: scripts/tls-tests.sh writes
// the CA with `localzure tls ca` into LOCALZURE_TLS_DIR first, and the server reuses it).
// - The admin client builds `https://{host:port}` from the connection string (the plain
//   emulator one here), on the AMQP port and on the HTTPS port.
// - With `webSocketOptions`, @azure/core-amqp opens `wss://{host}:{port}/$servicebus/websocket`
//   (ConnectionContextBase.js), subprotocol AMQPWSB10, port from the connection string.

import assert from "node:assert/strict";
import { test, before, after } from "node:test";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { randomUUID } from "node:crypto";
import WebSocket from "ws";
import { ServiceBusAdministrationClient, ServiceBusClient } from "@azure/service-bus";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const BINARY =
  process.env.LOCALZURE_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "debug", "localzure");
const KEY = "SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE";
const OPTIONS = { retryOptions: { maxRetries: 1, timeoutInMs: 10_000 } };
let server;

before(async () => {
  assert.ok(process.env.NODE_EXTRA_CA_CERTS, "run through scripts/tls-tests.sh");
  assert.ok(process.env.LOCALZURE_TLS_DIR, "run through scripts/tls-tests.sh");
  const dir = mkdtempSync(join(tmpdir(), "localzure-tls-js-"));
  const logPath = join(dir, "server.log");
  const log = openSync(logPath, "w");
  const proc = spawn(BINARY, ["start"], {
    cwd: dir,
    stdio: ["ignore", log, log],
    env: {
      ...process.env,
      LOCALZURE_HTTP_PORT: "0",
      LOCALZURE_AMQP_PORT: "0",
      LOCALZURE_HTTPS_PORT: "0",
      LOCALZURE_AMQPS_PORT: "0",
      LOCALZURE_LOG: "info",
    },
  });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const text = readFileSync(logPath, "utf8");
    const port = (re) => Number(re.exec(text)?.[1]);
    const ports = {
      amqp: port(/AMQP listening on amqp:\/\/\S*:(\d+)/),
      https: port(/HTTPS listening on https:\/\/\S*:(\d+)/),
    };
    if (ports.amqp && ports.https) {
      server = { proc, logPath, ...ports };
      return;
    }
    if (proc.exitCode !== null) throw new Error(`localzure exited early:\n${text}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill("SIGKILL");
  throw new Error("localzure did not report its ports");
});

after(async () => {
  if (!server) return;
  const exited = new Promise((r) => server.proc.once("exit", (code) => r(code)));
  server.proc.kill("SIGTERM");
  const code = await exited;
  const text = readFileSync(server.logPath, "utf8");
  assert.equal(code, 0, text);
  assert.ok(!/\bERROR\b|panicked/.test(text), text);
});

const conn = (port) => `Endpoint=sb://localhost:${port};${KEY};UseDevelopmentEmulator=true;`;
const name = (p) => p + randomUUID().slice(0, 8);

for (const kind of ["amqp", "https"]) {
  test(`admin client over HTTPS on the ${kind} port`, async () => {
    const admin = new ServiceBusAdministrationClient(conn(server[kind]));
    assert.ok((await admin.getNamespaceProperties()).name);
    const q = name("q");
    await admin.createQueue(q, { maxDeliveryCount: 7 });
    const props = await admin.getQueue(q);
    assert.equal(props.maxDeliveryCount, 7);
    props.maxDeliveryCount = 9;
    await admin.updateQueue(props);
    assert.equal((await admin.getQueue(q)).maxDeliveryCount, 9);
    const extra = [name("p"), name("p"), name("p")];
    for (const e of extra) await admin.createQueue(e);
    const listed = [];
    for await (const page of admin.listQueues().byPage()) {
      listed.push(...page.map((x) => x.name));
    }
    for (const n of [q, ...extra]) assert.ok(listed.includes(n), `${n} not listed`);

    const sb = new ServiceBusClient(conn(server.amqp), OPTIONS);
    const sender = sb.createSender(q);
    await sender.sendMessages([{ body: "a" }, { body: "b" }]);
    await sender.close();
    assert.equal((await admin.getQueueRuntimeProperties(q)).activeMessageCount, 2);

    const t = name("t");
    await admin.createTopic(t);
    const tp = await admin.getTopic(t);
    await admin.updateTopic(tp);
    await admin.createSubscription(t, "s1", { maxDeliveryCount: 4 });
    const sp = await admin.getSubscription(t, "s1");
    assert.equal(sp.maxDeliveryCount, 4);
    sp.maxDeliveryCount = 5;
    await admin.updateSubscription(sp);
    assert.equal((await admin.getSubscription(t, "s1")).maxDeliveryCount, 5);
    await admin.createRule(t, "s1", "r1", { sqlExpression: "color = 'red'" });
    const rule = await admin.getRule(t, "s1", "r1");
    rule.filter = { sqlExpression: "color = 'blue'" };
    await admin.updateRule(t, "s1", rule);
    assert.match((await admin.getRule(t, "s1", "r1")).filter.sqlExpression, /blue/);
    const rules = [];
    for await (const r of admin.listRules(t, "s1")) rules.push(r.name);
    assert.ok(rules.includes("r1"));
    const ts = sb.createSender(t);
    await ts.sendMessages({ body: "x", applicationProperties: { color: "blue" } });
    await ts.close();
    assert.equal((await admin.getSubscriptionRuntimeProperties(t, "s1")).activeMessageCount, 1);
    await sb.close();

    await admin.deleteRule(t, "s1", "r1");
    await admin.deleteSubscription(t, "s1");
    await admin.deleteTopic(t);
    for (const n of [q, ...extra]) await admin.deleteQueue(n);
    assert.equal(await admin.queueExists(q), false);
  });
}

for (const kind of ["amqp", "https"]) {
  for (const session of [false, true]) {
    test(`AMQP over wss:// on the ${kind} port (sessions: ${session})`, async () => {
      const admin = new ServiceBusAdministrationClient(conn(server.https));
      const q = name("w");
      await admin.createQueue(q, { requiresSession: session });
      const client = new ServiceBusClient(conn(server[kind]), {
        ...OPTIONS,
        webSocketOptions: { webSocket: WebSocket },
      });
      try {
        const sessionId = session ? "s1" : undefined;
        const sender = client.createSender(q);
        await sender.sendMessages([0, 1, 2].map((i) => ({ body: `m${i}`, sessionId })));
        await sender.close();
        const receiver = session
          ? await client.acceptNextSession(q)
          : client.createReceiver(q);
        const got = [];
        while (got.length < 3) {
          const batch = await receiver.receiveMessages(3, { maxWaitTimeInMs: 10_000 });
          assert.ok(batch.length > 0, "messages missing");
          got.push(...batch);
        }
        assert.deepEqual(got.map((m) => m.body).sort(), ["m0", "m1", "m2"]);
        await receiver.abandonMessage(got[0]);
        for (const m of got.slice(1)) await receiver.completeMessage(m);
        const [again] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 10_000 });
        assert.equal(again.body, got[0].body);
        assert.equal(again.deliveryCount, 1);
        await receiver.completeMessage(again);
        assert.deepEqual(await receiver.peekMessages(5), []);
        await receiver.close();
      } finally {
        await client.close();
      }
    });
  }
}
