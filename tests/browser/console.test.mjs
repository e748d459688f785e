// The web console in a real browser (issue 20): headless Chromium (Debian's, at
// /usr/bin/chromium unless CHROMIUM is set) driven by playwright-core. Screenshots go to
// tests/browser/artifacts/ (git-ignored; CI keeps them).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir, networkInterfaces } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer, stopServer, createQueue, createTopic, createSubscription, send, lockAndAbandon } from "./server.mjs";

const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), "artifacts");
mkdirSync(ARTIFACTS, { recursive: true });

// A fresh profile directory (Playwright passes it as --user-data-dir).
let browser;
before(async () => {
  browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "localzure-chromium-")), {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1360, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
});
after(async () => { await browser?.close(); });

/** A page that records script errors and accepts confirm dialogs. */
async function openPage(url) {
  const page = await browser.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(String(e)));
  page.on("dialog", (d) => d.accept());
  await page.goto(url);
  return page;
}

const cell = (page, path, col) =>
  page.locator(`#entities tr[data-path="${path}"] td`).nth(col);

test("overview, peek, dead-letter resubmit, send, purge", async () => {
  const server = await startServer();
  const base = `http://localhost:${server.port}`;
  try {
    await createQueue(base, "orders", "<MaxDeliveryCount>1</MaxDeliveryCount>");
    await createQueue(base, "invoices");
    await createTopic(base, "events");
    await createSubscription(base, "events", "audit");
    const page = await openPage(`${base}/`);

    // Overview: the queue with zero counts, then its counts change after sends (auto-refresh).
    await page.locator('#entities tr[data-path="orders"]').waitFor();
    assert.equal(await cell(page, "orders", 3).textContent(), "0");
    for (let i = 0; i < 3; i++) {
      await send(base, "orders", JSON.stringify({ order: i, item: "widget" }),
        { MessageId: `order-${i}`, Label: "new-order" }, { region: '"eu"', priority: `${i}` });
    }
    await page.waitForFunction(() =>
      document.querySelector('#entities tr[data-path="orders"] td:nth-child(4)')?.textContent === "3");
    // The filter hides other entities.
    await page.fill("#filter", "inv");
    await page.locator('#entities tr[data-path="orders"]').waitFor({ state: "detached" });
    await page.fill("#filter", "");
    await page.screenshot({ path: join(ARTIFACTS, "overview.png") });

    // Storage-wide actions through /$admin (a loopback caller here): snapshot, export download.
    await page.click("#snapshot");
    await page.getByText(/Snapshot written/).waitFor();
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export")]);
    assert.match(readFileSync(await download.path(), "utf8"), /"orders"/);

    // Entity page: peek a message, see its system and application properties and body.
    await page.click('#entities a[href="#/entity/orders"]');
    await page.locator("#msgtable tbody tr[data-seq]").first().waitFor();
    assert.equal(await page.locator("#msgtable tbody tr[data-seq]").count(), 3);
    await page.locator("#msgtable tbody tr[data-seq]").first().click();
    const detail = page.locator("#detail");
    await detail.getByText("order-0").waitFor();
    assert.match(await detail.textContent(), /new-order/);
    assert.match(await detail.textContent(), /region/);
    assert.match(await page.locator("#body").textContent(), /"item": "widget"/);
    await page.screenshot({ path: join(ARTIFACTS, "entity.png"), fullPage: true });
    // Peeking changed nothing: still 3 active, delivery count 0.
    assert.match(await page.locator("#msgtable tbody tr").first().textContent(), /Active/);

    // Dead-letter one (abandon at max delivery count 1), then resubmit it from the DLQ tab.
    await lockAndAbandon(base, "orders");
    await page.click("#tab-dlq");
    await page.locator("#msgtable tbody tr[data-seq]").first().waitFor();
    await page.locator("#msgtable tbody tr[data-seq]").first().click();
    await detail.getByText("MaxDeliveryCountExceeded").first().waitFor();
    await page.screenshot({ path: join(ARTIFACTS, "dead-letter.png"), fullPage: true });
    // The README's picture (docs/console.png): the first screen of this page.
    await page.screenshot({ path: join(ARTIFACTS, "console.png") });
    await page.click("#resubmit-one");
    await page.getByText("No messages.").waitFor();
    await page.click("#tab-main");
    await page.waitForFunction(() => document.querySelectorAll("#msgtable tbody tr[data-seq]").length === 3);

    // Send a test message through the form.
    await page.fill("#send-body", "hello from the console");
    await page.fill("#send-ct", "text/plain");
    await page.fill("#send-props", '{"source": "browser"}');
    await page.click("#send");
    await page.waitForFunction(() => document.querySelectorAll("#msgtable tbody tr[data-seq]").length === 4);

    // Purge (the confirm dialog is accepted).
    await page.click("#purge");
    await page.getByText("No messages.").waitFor();
    await page.waitForFunction(() => document.querySelector('[data-count="Active"] b')?.textContent === "0");
    const r = await fetch(`${base}/$console/api/messages?path=orders`);
    assert.deepEqual((await r.json()).messages, []);
    assert.deepEqual(page.errors, []);
  } finally {
    await stopServer(server);
  }
});

test("edit properties, create and delete an entity", async () => {
  const server = await startServer();
  const base = `http://localhost:${server.port}`;
  try {
    await createQueue(base, "q1");
    const page = await openPage(`${base}/#/entity/q1`);
    const mdc = page.locator('[data-prop="MaxDeliveryCount"]');
    await mdc.waitFor();
    await mdc.fill("7");
    await page.click("#save-props");
    await page.waitForFunction(() => document.querySelector('[data-prop="MaxDeliveryCount"]')?.value === "7");
    const atom = await (await fetch(`${base}/q1`)).text();
    assert.match(atom, /<MaxDeliveryCount>7<\/MaxDeliveryCount>/);

    await page.goto(`${base}/#/`);
    await page.click("#new-entity");
    await page.selectOption("#newkind", "topic");
    await page.fill("#newname", "events");
    await page.getByRole("button", { name: "Create" }).click();
    await page.locator('#entities tr[data-path="events"]').waitFor();
    await page.click('#entities a[href="#/entity/events"]');
    await page.click("#delete-entity");
    await page.locator('#entities tr[data-path="q1"]').waitFor();
    assert.equal(await page.locator('#entities tr[data-path="events"]').count(), 0);
    assert.deepEqual(page.errors, []);
  } finally {
    await stopServer(server);
  }
});

/** A non-loopback address of this machine: requests from it are what a container sees from
 * the host's browser (not loopback, and no secure context, so no WebCrypto). */
function outsideAddress() {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return null;
}

test("with SAS on, from a non-loopback address: the page signs with the key", async (t) => {
  const ip = outsideAddress();
  if (!ip) return t.skip("no non-loopback IPv4 address");
  const key = "c2VjcmV0LWtleQ==";
  const server = await startServer({
    LOCALZURE_HOST: "0.0.0.0",
    LOCALZURE_SAS_KEY_NAME: "RootManageSharedAccessKey",
    LOCALZURE_SAS_KEY: key,
  });
  const base = `http://${ip}:${server.port}`;
  try {
    const page = await openPage(`${base}/`);
    // Not a secure context: the page's own SHA-256 signs.
    assert.equal(await page.evaluate(() => window.isSecureContext), false);
    await page.getByText(/401/).first().waitFor();
    await page.click("#keys summary");
    await page.fill("#skey", key);
    await page.getByRole("button", { name: "Save for this tab" }).click();
    await page.getByText("No entities yet").waitFor();
    // Create through ATOM and send through REST from the page, both signed.
    await page.click("#new-entity");
    await page.fill("#newname", "signed");
    await page.getByRole("button", { name: "Create" }).click();
    await page.locator('#entities tr[data-path="signed"]').waitFor();
    await page.click('#entities a[href="#/entity/signed"]');
    await page.click("#send");
    await page.locator("#msgtable tbody tr[data-seq]").first().waitFor();
    // Storage-wide actions keep the admin rule: a non-loopback caller without the token.
    await page.click("#snapshot");
    await page.getByText(/401: The admin API answers loopback callers/).waitFor();
    assert.deepEqual(page.errors, []);
  } finally {
    await stopServer(server);
  }
});
