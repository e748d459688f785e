// The real localzure binary for the browser tests: ephemeral port, temporary data dir.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BINARY =
  process.env.LOCALZURE_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "debug", "localzure");
const ATOM_NS = "http://www.w3.org/2005/Atom";
const SB_NS = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";

/** Starts the binary (extra environment in `env`) and polls its log for the HTTP port. */
export async function startServer(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), "localzure-browser-"));
  const logPath = join(dir, "server.log");
  const log = openSync(logPath, "w");
  const proc = spawn(BINARY, ["start"], {
    cwd: dir,
    stdio: ["ignore", log, log],
    env: { ...process.env, LOCALZURE_HTTP_PORT: "0", LOCALZURE_AMQP_PORT: "0", LOCALZURE_LOG: "info", ...env },
  });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const text = readFileSync(logPath, "utf8");
    const http = /listening on http:\/\/[^:]+:(\d+)/.exec(text);
    if (http) return { proc, logPath, port: Number(http[1]) };
    if (proc.exitCode !== null) throw new Error(`localzure exited early:\n${text}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill("SIGKILL");
  throw new Error("localzure did not report its port");
}

export async function stopServer(server) {
  if (server.proc.exitCode !== null) return;
  const exited = new Promise((r) => server.proc.once("exit", r));
  server.proc.kill("SIGTERM");
  await exited;
}

async function put(base, path, kind, props = "") {
  const body = `<entry xmlns="${ATOM_NS}"><content type="application/xml"><${kind} xmlns="${SB_NS}">${props}</${kind}></content></entry>`;
  const r = await fetch(`${base}/${path}`, { method: "PUT", body, headers: { "content-type": "application/atom+xml" } });
  if (r.status !== 201) throw new Error(`PUT ${path}: ${r.status} ${await r.text()}`);
}

/** Creates entities (ATOM PUT), as any management client does. */
export const createQueue = (base, name, props = "") => put(base, name, "QueueDescription", props);
export const createTopic = (base, name) => put(base, name, "TopicDescription");
export const createSubscription = (base, topic, name) =>
  put(base, `${topic}/Subscriptions/${name}`, "SubscriptionDescription");

/** Sends one message through the REST API. */
export async function send(base, entity, body, brokerProps = {}, headers = {}) {
  const r = await fetch(`${base}/${entity}/messages`, {
    method: "POST",
    body,
    headers: { "content-type": "application/json", BrokerProperties: JSON.stringify(brokerProps), ...headers },
  });
  if (r.status !== 201) throw new Error(`send: ${r.status} ${await r.text()}`);
}

/** Peek-locks the head message and abandons it (with MaxDeliveryCount 1: dead-letters it). */
export async function lockAndAbandon(base, entity) {
  const r = await fetch(`${base}/${entity}/messages/head?timeout=5`, { method: "POST" });
  if (r.status !== 201) throw new Error(`peek-lock: ${r.status}`);
  const u = await fetch(r.headers.get("location"), { method: "PUT" });
  if (u.status !== 200) throw new Error(`unlock: ${u.status}`);
}
