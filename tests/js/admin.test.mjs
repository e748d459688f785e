// @azure/service-bus 7.9.5's ServiceBusAdministrationClient (the ATOM management API) against
// the real binary: list operations page by following the feeds' `next` links
// (atomXmlHelper.ts `parseLinkInfo(feed.link, "next")`, then `getMarkerFromNextLinkUrl` reads
// its `$skip`; paging stops when a feed has no `next` link).

import { test } from "node:test";
import assert from "node:assert/strict";
import { ServiceBusAdministrationClient } from "@azure/service-bus";
import { SB_NS, put, startServer, stopServer } from "./server.mjs";

/**
 * The admin client on `server`'s HTTP port. The client always builds `https://{endpoint}/…`
 * (serviceBusAtomManagementClient.ts `getUrl`) and LocalZure has no TLS listener yet, so one
 * pipeline policy sends its requests as plain HTTP. The constructor builds its own pipeline
 * (no `httpClient` or `additionalPolicies` pass through), hence `pipeline.addPolicy`. This is the
 * one place to change when the TLS listener lands.
 */
function adminClient(server) {
  const client = new ServiceBusAdministrationClient(
    `Endpoint=sb://localhost:${server.http};SharedAccessKeyName=RootManageSharedAccessKey;` +
      "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
  );
  client.pipeline.addPolicy({
    name: "localzurePlainHttp",
    sendRequest(request, next) {
      request.url = request.url.replace(/^https:/, "http:");
      request.allowInsecureConnection = true;
      return next(request);
    },
  });
  return client;
}

/** Runs `body(server, admin)` against a fresh server; stops it after. */
async function withAdmin(body) {
  const server = await startServer();
  try {
    await body(server, adminClient(server));
  } finally {
    await stopServer(server);
  }
}

// A full page of the service's default 100 and a second page of 3.
const MANY = 103;
const names = (prefix, n) =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, "0")}`);

async function all(iter) {
  const out = [];
  // Subscriptions are named by `subscriptionName`, the rest by `name`.
  for await (const x of iter) out.push(x.subscriptionName ?? x.name);
  return out.sort();
}

async function pageSizes(iter, maxPageSize) {
  const sizes = [];
  for await (const page of iter.byPage({ maxPageSize })) sizes.push(page.length);
  return sizes;
}

const queue = (server, name) => put(server, name, `<QueueDescription xmlns="${SB_NS}"/>`);
const topic = (server, name) => put(server, name, `<TopicDescription xmlns="${SB_NS}"/>`);
const subscription = (server, t, name) =>
  put(server, `${t}/Subscriptions/${name}`, `<SubscriptionDescription xmlns="${SB_NS}"/>`);
const rule = (server, t, s, name) =>
  put(
    server,
    `${t}/Subscriptions/${s}/Rules/${name}`,
    `<RuleDescription xmlns="${SB_NS}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">` +
      `<Filter i:type="CorrelationFilter"><Label>${name}</Label></Filter></RuleDescription>`,
  );

test("listQueues pages past 100 and byPage({ maxPageSize: 1 }) over 3", () =>
  withAdmin(async (server, admin) => {
    const want = names("queue-", MANY);
    for (const n of want) await queue(server, n);
    assert.deepEqual(await all(admin.listQueues()), want);
    assert.deepEqual(await pageSizes(admin.listQueues(), 100), [100, 3]);
    assert.deepEqual(await pageSizes(admin.listQueuesRuntimeProperties(), 50), [50, 50, 3]);
  }));

test("listQueues byPage({ maxPageSize: 1 }) over 3 queues", () =>
  withAdmin(async (server, admin) => {
    for (const n of ["a", "b", "c"]) await queue(server, n);
    assert.deepEqual(await pageSizes(admin.listQueues(), 1), [1, 1, 1]);
    const names = [];
    for await (const page of admin.listQueues().byPage({ maxPageSize: 1 })) {
      names.push(...page.map((q) => q.name));
    }
    assert.deepEqual(names.sort(), ["a", "b", "c"]);
    // Resuming from a continuation token: the second page onwards.
    const first = await admin.listQueues().byPage({ maxPageSize: 1 }).next();
    const rest = [];
    for await (const page of admin
      .listQueues()
      .byPage({ maxPageSize: 1, continuationToken: first.value.continuationToken })) {
      rest.push(...page.map((q) => q.name));
    }
    assert.equal(rest.length, 2);
  }));

test("listTopics pages", () =>
  withAdmin(async (server, admin) => {
    const want = names("topic-", MANY);
    for (const n of want) await topic(server, n);
    assert.deepEqual(await all(admin.listTopics()), want);
    assert.deepEqual(await pageSizes(admin.listTopics(), 100), [100, 3]);
    assert.equal((await pageSizes(admin.listTopics(), 1)).length, MANY);
  }));

test("listSubscriptions pages", () =>
  withAdmin(async (server, admin) => {
    await topic(server, "events");
    const want = names("sub-", MANY);
    for (const n of want) await subscription(server, "events", n);
    assert.deepEqual(await all(admin.listSubscriptions("events")), want);
    assert.deepEqual(await pageSizes(admin.listSubscriptions("events"), 100), [100, 3]);
    await topic(server, "small");
    for (const n of ["x", "y", "z"]) await subscription(server, "small", n);
    assert.deepEqual(await pageSizes(admin.listSubscriptions("small"), 1), [1, 1, 1]);
  }));

test("listRules pages", () =>
  withAdmin(async (server, admin) => {
    await topic(server, "events");
    await subscription(server, "events", "audit");
    // `$Default` plus 102 more.
    const extra = names("rule-", MANY - 1);
    for (const n of extra) await rule(server, "events", "audit", n);
    assert.deepEqual(await all(admin.listRules("events", "audit")), ["$Default", ...extra]);
    assert.deepEqual(await pageSizes(admin.listRules("events", "audit"), 100), [100, 3]);
    await subscription(server, "events", "few");
    for (const n of ["r1", "r2"]) await rule(server, "events", "few", n);
    assert.deepEqual(await pageSizes(admin.listRules("events", "few"), 1), [1, 1, 1]);
  }));
