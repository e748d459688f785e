// Shared by the JavaScript SDK tests: the real localzure binary on ephemeral ports with a
// temporary data dir, REST (ATOM) entity creation as tests/python/conftest.py does, and a
// receive helper.

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
export const SB_NS = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";

/** Starts the binary and waits (polling its log) until it reports both ports. */
export async function startServer() {
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
      return { proc, logPath, http: Number(http[1]), amqp: Number(amqp[1]) };
    }
    if (proc.exitCode !== null) {
      throw new Error(`localzure exited early:\n${text}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill("SIGKILL");
  throw new Error("localzure did not report its ports");
}

export async function put(server, path, description) {
  const body = `<entry xmlns="${ATOM_NS}"><content type="application/xml">${description}</content></entry>`;
  const r = await fetch(`http://127.0.0.1:${server.http}/${path}`, {
    method: "PUT",
    body,
    headers: { "content-type": "application/atom+xml" },
  });
  assert.equal(r.status, 201, `PUT ${path}: ${await r.text()}`);
}

/** Fail fast: a broken operation should fail its test in seconds, not after the SDK's default
 * retries (minutes). */
export const CLIENT_OPTIONS = { retryOptions: { maxRetries: 1, timeoutInMs: 10_000 } };

/** Runs `body(server, client)` against a fresh server and SDK client; stops both after. */
export async function withServer(body) {
  const server = await startServer();
  const client = new ServiceBusClient(connectionString(server), CLIENT_OPTIONS);
  try {
    await body(server, client);
  } finally {
    await client.close();
    await stopServer(server);
  }
}

/** SIGTERM, then checks the shutdown was clean: exit code 0 (not a signal, not killed after a
 * 30 s hang) and no ERROR or panic line in the server's log. */
export async function stopServer(server) {
  const { proc } = server;
  const exited = new Promise((res) => {
    if (proc.exitCode !== null || proc.signalCode !== null) res();
    else proc.once("exit", () => res());
  });
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(timer);
  const text = readFileSync(server.logPath, "utf8");
  // Colour codes stripped first: "\x1b[31mERROR" has no word boundary before the level.
  const bad = text
    .replace(/\x1b\[[0-9;]*m/g, "")
    .split("\n")
    .filter((line) => /\bERROR\b|panicked/.test(line));
  assert.deepEqual(
    { code: proc.exitCode, signal: proc.signalCode, bad },
    { code: 0, signal: null, bad: [] },
    `localzure did not shut down cleanly:\n${text}`,
  );
}

export function connectionString(server) {
  return (
    `Endpoint=sb://localhost:${server.amqp};SharedAccessKeyName=RootManageSharedAccessKey;` +
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
  );
}

/** Receives until `n` messages arrived or 10 s passed; completes each unless told not to. */
export async function receiveAll(receiver, n, { complete = true } = {}) {
  const got = [];
  const deadline = Date.now() + 10_000;
  while (got.length < n && Date.now() < deadline) {
    const batch = await receiver.receiveMessages(n - got.length, { maxWaitTimeInMs: 1000 });
    for (const m of batch) {
      if (complete) await receiver.completeMessage(m);
      got.push(m);
    }
  }
  return got;
}
