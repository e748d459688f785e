// LocalZure Service Bus web console: plain JS, no build step, no external assets.
// Data comes from /$console/api (overview, peek, actions), the REST messaging and ATOM
// management API (send, properties, create/delete), and /$admin (snapshot, export).
'use strict';

const API = '/$console/api/';
const ATOM_NS = 'http://www.w3.org/2005/Atom';
const SB_NS = 'http://schemas.microsoft.com/netservices/2010/10/servicebus/connect';
const main = document.getElementById('main');
let refreshTimer = null;

// ---- small DOM helper: h('tag.class', {attr}, children...) -------------------------------
function h(spec, attrs, ...kids) {
  const [tag, ...cls] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (cls.length) el.className = cls.join(' ');
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function flash(text, err) {
  const box = document.getElementById('flash');
  const d = h(err ? 'div.err' : 'div', {}, text);
  box.append(d);
  setTimeout(() => d.remove(), err ? 8000 : 3000);
}

// ---- keys (sessionStorage: forgotten when the tab closes) ---------------------------------
const keys = {
  get skn() { return sessionStorage.getItem('lz.skn') || 'RootManageSharedAccessKey'; },
  get skey() { return sessionStorage.getItem('lz.skey') || ''; },
  get atoken() { return sessionStorage.getItem('lz.atoken') || ''; },
};
document.getElementById('skn').value = sessionStorage.getItem('lz.skn') || '';
document.getElementById('keysform').addEventListener('submit', (e) => {
  e.preventDefault();
  for (const [id, k] of [['skn', 'lz.skn'], ['skey', 'lz.skey'], ['atoken', 'lz.atoken']]) {
    const v = document.getElementById(id).value;
    if (v) sessionStorage.setItem(k, v); else if (id !== 'skn') sessionStorage.removeItem(k);
  }
  document.getElementById('keys').open = false;
  flash('Keys saved for this tab');
  route();
});

// ---- SAS tokens, signed as the SDKs sign them: HMAC-SHA256 of "{encoded uri}\n{expiry}" ----
// WebCrypto needs a secure context (HTTPS, or plain HTTP on localhost); elsewhere a small SHA-256.
function sha256(msg) {
  const primes = [];
  for (let n = 2; primes.length < 64; n++) if (primes.every((p) => n % p)) primes.push(n);
  const frac = (x) => ((x - Math.floor(x)) * 4294967296) >>> 0;
  const K = primes.map((p) => frac(Math.cbrt(p)));
  let H = primes.slice(0, 8).map((p) => frac(Math.sqrt(p)));
  const ror = (x, n) => (x >>> n) | (x << (32 - n));
  const len = msg.length;
  const size = ((len + 9 + 63) >> 6) << 6;
  const m = new Uint8Array(size);
  m.set(msg);
  m[len] = 0x80;
  const dv = new DataView(m.buffer);
  dv.setUint32(size - 4, (len * 8) >>> 0);
  dv.setUint32(size - 8, Math.floor(len / 536870912));
  const w = new Int32Array(64);
  for (let o = 0; o < size; o += 64) {
    for (let i = 0; i < 16; i++) w[i] = dv.getUint32(o + 4 * i);
    for (let i = 16; i < 64; i++) {
      const s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, hh] = H;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    H = [a, b, c, d, e, f, g, hh].map((x, i) => (x + H[i]) | 0);
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  H.forEach((x, i) => ov.setUint32(4 * i, x >>> 0));
  return out;
}

function hmacFallback(key, msg) {
  let k = key.length > 64 ? sha256(key) : key;
  const pad = (v) => { const p = new Uint8Array(64).fill(v); k.forEach((b, i) => { p[i] ^= b; }); return p; };
  const cat = (a, b) => { const r = new Uint8Array(a.length + b.length); r.set(a); r.set(b, a.length); return r; };
  return sha256(cat(pad(0x5c), sha256(cat(pad(0x36), msg))));
}

async function hmacB64(keyText, text) {
  const enc = new TextEncoder();
  let mac;
  if (window.crypto && crypto.subtle && !window.__lzNoWebCrypto) {
    const key = await crypto.subtle.importKey('raw', enc.encode(keyText), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, enc.encode(text)));
  } else {
    mac = hmacFallback(enc.encode(keyText), enc.encode(text));
  }
  return btoa(String.fromCharCode(...mac));
}

async function sasToken() {
  if (!keys.skey) return null;
  const sr = encodeURIComponent(`${location.protocol}//${location.host}/`);
  const se = Math.floor(Date.now() / 1000) + 3600;
  const sig = await hmacB64(keys.skey, `${sr}\n${se}`);
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}&skn=${encodeURIComponent(keys.skn)}`;
}

// ---- requests -----------------------------------------------------------------------------
function errorText(status, text) {
  const m = /<Detail>([\s\S]*?)<\/Detail>/.exec(text || '');
  return `${status}: ${m ? m[1] : (text || '').slice(0, 300)}`;
}

// kind: 'console' (our API), 'data' (REST messaging/management), 'admin' (/$admin).
async function call(method, url, { body, headers = {}, kind = 'data' } = {}) {
  const hd = { ...headers };
  if (kind === 'admin') {
    hd['X-LocalZure-Admin'] = '1';
    if (keys.atoken) hd.Authorization = `Bearer ${keys.atoken}`;
  } else {
    if (kind === 'console') hd['X-LocalZure-Console'] = '1';
    const t = await sasToken();
    if (t) hd.Authorization = t;
  }
  const r = await fetch(url, { method, headers: hd, body, cache: 'no-store' });
  if (!r.ok) {
    const text = await r.text();
    const err = new Error(errorText(r.status, text));
    err.status = r.status;
    throw err;
  }
  return r;
}
const getJson = async (path) => (await call('GET', API + path, { kind: 'console' })).json();
const postJson = async (path, obj) => (await call('POST', API + path, {
  kind: 'console', body: JSON.stringify(obj), headers: { 'Content-Type': 'application/json' },
})).json();
const encPath = (p) => p.split('/').map(encodeURIComponent).join('/');

function guarded(fn) {
  return async (...args) => {
    try { await fn(...args); } catch (e) { flash(e.message, true); }
  };
}

// ---- header actions (admin rule) ----------------------------------------------------------
document.getElementById('snapshot').addEventListener('click', guarded(async () => {
  const r = await (await call('POST', '/$admin/snapshot', { kind: 'admin' })).json();
  flash(`Snapshot written (LSN ${r.lsn}, ${r.entities_written} entities, ${r.messages_written} messages)`);
}));
document.getElementById('export').addEventListener('click', guarded(async () => {
  const blob = await (await call('GET', '/$admin/export', { kind: 'admin' })).blob();
  const a = h('a', { href: URL.createObjectURL(blob), download: `localzure-export-${new Date().toISOString().replace(/[:.]/g, '-')}.json` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}));

// ---- formatting ---------------------------------------------------------------------------
function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1048576).toFixed(1)} MB`;
}
const statusBadge = (s) => h(s === 'Active' ? 'span.status' : 'span.status.off', {}, s);
function b64bytes(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
function hexdump(bytes) {
  const lines = [];
  for (let o = 0; o < bytes.length; o += 16) {
    const row = Array.from(bytes.slice(o, o + 16));
    const hex = row.map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const asc = row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${o.toString(16).padStart(8, '0')}  ${hex.padEnd(48)}  ${asc}`);
  }
  return lines.join('\n');
}
function bodyViews(b64) {
  const bytes = b64bytes(b64);
  let text = null;
  try { text = new TextDecoder('utf-8', { fatal: true }).decode(bytes); } catch (_) { text = null; }
  let json = null;
  if (text !== null) { try { json = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { json = null; } }
  return { text, json, hex: hexdump(bytes), size: bytes.length };
}

// ---- overview -----------------------------------------------------------------------------
let filterText = '';
async function overview() {
  const table = h('table', { id: 'entities' });
  const filter = h('input', {
    id: 'filter', placeholder: 'Filter by name', value: filterText,
    oninput: (e) => { filterText = e.target.value; draw(); },
  });
  let data = null;
  const create = createForm();
  main.replaceChildren(
    h('h1', {}, 'Namespace'),
    h('div.cards', { id: 'totals' }),
    h('div.toolbar', {}, filter, h('span.muted', { id: 'updated' }), h('span.spacer'),
      h('button', { id: 'new-entity', onclick: () => { create.hidden = !create.hidden; } }, 'New entity…')),
    create,
    table,
  );
  function draw() {
    if (!data) return;
    const t = data.totals || {};
    document.getElementById('totals').replaceChildren(
      ...[['Queues', t.queues], ['Topics', t.topics], ['Subscriptions', t.subscriptions],
        ['Messages', t.messages], ['Active', t.active], ['Scheduled', t.scheduled], ['Deferred', t.deferred],
        ['Dead-lettered', t.dead_letter]]
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => h('div.card', {}, h('b', {}, v), h('span', {}, k))));
    const f = filterText.toLowerCase();
    const rows = data.entities.filter((e) => !f || e.path.toLowerCase().includes(f));
    const num = (v) => h('td.n', {}, v);
    table.replaceChildren(
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Kind'), h('th', {}, 'Status'),
        ...['Active', 'Scheduled', 'Deferred', 'Dead-letter', 'Transfer DLQ', 'Size'].map((c) => h('th.n', {}, c)))),
      h('tbody', {}, rows.length ? rows.map((e) => h(e.kind === 'subscription' ? 'tr.sub' : 'tr', { 'data-path': e.path },
        h('td', {}, h('a', { href: `#/entity/${encPath(e.path)}` }, e.kind === 'subscription' ? `${e.topic} › ${e.name}` : e.name)),
        h('td.kind', {}, e.kind),
        h('td', {}, statusBadge(e.status)),
        num(e.kind === 'topic' ? '' : e.counts.active), num(e.counts.scheduled),
        num(e.kind === 'topic' ? '' : e.counts.deferred),
        num(e.kind === 'topic' ? '' : e.counts.deadLetter), num(e.counts.transferDeadLetter),
        num(fmtBytes(e.sizeInBytes)))) : h('tr', {}, h('td.muted', { colspan: 9 }, data.entities.length ? 'No entity matches the filter.' : 'No entities yet: create one with "New entity…".'))),
    );
  }
  async function load() {
    try {
      data = await getJson('overview');
      document.getElementById('storage').textContent = `storage: ${data.storage}${data.degraded ? ' (degraded)' : ''}${data.sas ? ' · SAS on' : ''}`;
      document.getElementById('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
      draw();
    } catch (e) {
      document.getElementById('updated').textContent = e.message;
    }
  }
  await load();
  refreshTimer = setInterval(load, 2000);
}

const DESC = { queue: 'QueueDescription', topic: 'TopicDescription', subscription: 'SubscriptionDescription' };
function atomEntry(kind, inner = '') {
  return `<?xml version="1.0" encoding="utf-8"?><entry xmlns="${ATOM_NS}"><content type="application/xml">`
    + `<${DESC[kind]} xmlns="${SB_NS}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">${inner}</${DESC[kind]}></content></entry>`;
}
function createForm() {
  const kind = h('select', { id: 'newkind' }, h('option', { value: 'queue' }, 'Queue'), h('option', { value: 'topic' }, 'Topic'), h('option', { value: 'subscription' }, 'Subscription'));
  const name = h('input', { id: 'newname', placeholder: 'name (subscription: topic/Subscriptions/name)' });
  const sess = h('input', { type: 'checkbox', id: 'newsession' });
  const form = h('form.panel.toolbar', {
    hidden: true,
    onsubmit: guarded(async (e) => {
      e.preventDefault();
      let path = name.value.trim();
      if (kind.value === 'subscription' && !/\/subscriptions\//i.test(path)) throw new Error('A subscription path is topic/Subscriptions/name');
      const inner = sess.checked && kind.value !== 'topic' ? '<RequiresSession>true</RequiresSession>' : '';
      await call('PUT', `/${encPath(path)}`, { body: atomEntry(kind.value, inner), headers: { 'Content-Type': 'application/atom+xml' } });
      flash(`Created ${path}`);
      name.value = '';
    }),
  }, kind, name, h('label', {}, sess, ' requires session'), h('button.primary', { type: 'submit' }, 'Create'));
  return form;
}

// ---- entity page --------------------------------------------------------------------------
async function entityPage(path) {
  const state = { dlq: false, from: 0, pages: [], selected: null };
  let info;
  try { info = await getJson(`entity?path=${encodeURIComponent(path)}`); } catch (e) {
    main.replaceChildren(h('h1', {}, path), h('p.reason', {}, e.message), h('a', { href: '#/' }, '← Namespace'));
    return;
  }
  const cards = h('div.cards', { id: 'counts' });
  const msgs = h('div', { id: 'messages' });
  const tabs = h('div.tabs');
  const receivable = info.kind !== 'topic';
  main.replaceChildren(
    h('div.toolbar', {}, h('a', { href: '#/' }, '← Namespace')),
    h('h1', {}, h('span.kind', {}, info.kind), ' ', path, ' ', statusBadge(info.status)),
    cards,
    h('div.toolbar', {},
      receivable && h('button.danger', { id: 'purge', onclick: guarded(purge) }, 'Purge messages'),
      h('button.danger', { id: 'delete-entity', onclick: guarded(deleteEntity) }, `Delete ${info.kind}`)),
    receivable && tabs, receivable && msgs,
    h('div.grid2', {},
      h('div.panel', {}, h('h2', {}, 'Properties'), h('div', { id: 'props' }, 'Loading…')),
      info.kind === 'subscription' ? h('div.panel', {}, h('h2', {}, 'Rules'), rulesView(info.rules))
        : h('div.panel', {}, h('h2', {}, 'Send a test message'), sendForm(path, async () => { if (receivable) { await refresh(); await peek(); } }))),
  );
  drawCounts(info);
  loadProps(path, info.kind);
  if (!receivable) return;

  function drawCounts(i) {
    const c = i.counts;
    cards.replaceChildren(...[['Active', c.active], ['Scheduled', c.scheduled], ['Deferred', c.deferred],
      ['Dead-letter', c.deadLetter], ['Transfer DLQ', c.transferDeadLetter], ['Size', fmtBytes(i.sizeInBytes)]]
      .map(([k, v]) => h('div.card', { 'data-count': k }, h('b', {}, v), h('span', {}, k))));
  }
  function drawTabs() {
    tabs.replaceChildren(
      h(state.dlq ? 'button' : 'button.on', { id: 'tab-main', onclick: guarded(() => show(false)) }, `Messages (${info.counts.active + info.counts.scheduled + info.counts.deferred})`),
      h(state.dlq ? 'button.on' : 'button', { id: 'tab-dlq', onclick: guarded(() => show(true)) }, `Dead-letter queue (${info.counts.deadLetter})`));
  }
  async function show(dlq) {
    state.dlq = dlq; state.from = 0; state.pages = [];
    await refresh();
    await peek();
  }
  async function refresh() {
    try { info = await getJson(`entity?path=${encodeURIComponent(path)}`); drawCounts(info); drawTabs(); } catch (_) { /* shown on next action */ }
  }
  async function purge() {
    const what = state.dlq ? 'dead-letter queue' : 'messages';
    if (!confirm(`Delete every ${what} of ${path}?`)) return;
    const r = await postJson('purge', { path, dlq: state.dlq });
    flash(`Purged ${r.removed} message(s)${r.remaining ? `, ${r.remaining} left (locked or scheduled)` : ''}`);
    state.from = 0; state.pages = [];
    await peek();
  }
  async function deleteEntity() {
    if (!confirm(`Delete ${info.kind} ${path} and all its messages?`)) return;
    await call('DELETE', `/${encPath(path)}`);
    flash(`Deleted ${path}`);
    location.hash = '#/';
  }
  async function peek() {
    drawTabs();
    const r = await getJson(`messages?path=${encodeURIComponent(path)}&dlq=${state.dlq ? 1 : 0}&from=${state.from}&count=25`);
    const detail = h('div.panel', { id: 'detail' }, h('span.muted', {}, 'Select a message to see its properties and body.'));
    const rows = r.messages.map((m) => h('tr.clickable', {
      'data-seq': m.sequenceNumber,
      onclick: (e) => { for (const tr of e.currentTarget.parentNode.children) tr.classList.remove('sel'); e.currentTarget.classList.add('sel'); showMessage(detail, m); },
    },
    h('td.n', {}, m.sequenceNumber), h('td', {}, m.messageId), h('td', {}, m.state + (m.lockedUntil ? ' (locked)' : '')),
    h('td', {}, new Date(m.enqueuedTime).toLocaleString()), h('td.n', {}, m.deliveryCount),
    state.dlq ? h('td.reason', {}, m.deadLetterReason || '') : h('td', {}, m.subject || ''),
    h('td.n', {}, fmtBytes(m.size))));
    const toolbar = h('div.toolbar', {},
      h('button', { id: 'refresh', onclick: guarded(async () => { await refresh(); await peek(); }) }, 'Refresh'),
      h('button', { id: 'prev', disabled: !state.pages.length, onclick: guarded(async () => { state.from = state.pages.pop(); await peek(); }) }, '← Previous'),
      h('button', { id: 'next', disabled: r.next === null, onclick: guarded(async () => { state.pages.push(state.from); state.from = r.next; await peek(); }) }, 'Next →'),
      h('label', {}, 'from sequence number ', h('input', { id: 'fromseq', type: 'number', min: 0, value: state.from, class: 'seq',
        onchange: guarded(async (e) => { state.pages = []; state.from = Number(e.target.value) || 0; await peek(); }) })),
      state.dlq && h('button.primary', { id: 'resubmit-all', disabled: !r.messages.length, onclick: guarded(async () => {
        const res = await postJson('resubmit', { path });
        flash(`Resubmitted ${res.resubmitted.length} message(s) to ${res.to}`);
        await refresh(); await peek();
      }) }, 'Resubmit all'),
      h('span.muted', {}, 'Peek never changes state.'));
    msgs.replaceChildren(toolbar, h('div.grid2', {},
      h('div', {}, h('table', { id: 'msgtable' },
        h('thead', {}, h('tr', {}, h('th.n', {}, 'Seq'), h('th', {}, 'Message id'), h('th', {}, 'State'), h('th', {}, 'Enqueued'), h('th.n', {}, 'Deliveries'), h('th', {}, state.dlq ? 'Reason' : 'Subject'), h('th.n', {}, 'Size'))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td.muted', { colspan: 7 }, 'No messages.'))))),
      detail));
  }
  function showMessage(panel, m) {
    const sys = [['Sequence number', m.sequenceNumber], ['Message id', m.messageId], ['State', m.state],
      ['Enqueued', m.enqueuedTime], ['Expires', m.expiresAt], ['Delivery count', m.deliveryCount],
      ['Locked until', m.lockedUntil], ['Session id', m.sessionId], ['Correlation id', m.correlationId],
      ['Subject (label)', m.subject], ['To', m.to], ['Reply to', m.replyTo], ['Reply-to session', m.replyToSessionId],
      ['Content type', m.contentType], ['Partition key', m.partitionKey], ['Time to live', m.timeToLive],
      ['Scheduled enqueue', m.scheduledEnqueueTime], ['Dead-letter reason', m.deadLetterReason],
      ['Dead-letter description', m.deadLetterErrorDescription], ['Dead-letter source', m.deadLetterSource],
      ['Enqueued sequence number', m.enqueuedSequenceNumber], ['Size', fmtBytes(m.size)]]
      .filter(([, v]) => v !== null && v !== undefined && v !== '');
    const dl = (pairs) => h('dl.props', {}, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))]));
    const props = Object.entries(m.properties).filter(([k]) => !state.dlq || !k.startsWith('DeadLetter'));
    const views = bodyViews(m.body);
    const pre = h('pre', { id: 'body' });
    let mode = views.json !== null ? 'json' : views.text !== null ? 'text' : 'hex';
    const modeBtns = h('div.toolbar');
    const drawBody = () => {
      pre.textContent = views[mode];
      modeBtns.replaceChildren(...[['text', 'Text'], ['json', 'JSON'], ['hex', 'Hex']]
        .filter(([k]) => views[k] !== null)
        .map(([k, label]) => h(k === mode ? 'button.primary' : 'button', { onclick: () => { mode = k; drawBody(); } }, label)),
      h('span.muted', {}, `${views.size} bytes`));
    };
    drawBody();
    panel.replaceChildren(
      h('div.toolbar', {},
        h('b', {}, `Message ${m.sequenceNumber}`), h('span.spacer'),
        state.dlq && h('button.primary', { id: 'resubmit-one', onclick: guarded(async () => {
          const res = await postJson('resubmit', { path, sequenceNumbers: [m.sequenceNumber] });
          flash(`Resubmitted ${res.resubmitted.length} message(s) to ${res.to}`);
          await refresh(); await peek();
        }) }, 'Resubmit'),
        h('button.danger', { id: 'delete-msg', onclick: guarded(async () => {
          if (!confirm(`Delete message ${m.sequenceNumber}?`)) return;
          await postJson('delete', { path, dlq: state.dlq, sequenceNumber: m.sequenceNumber });
          flash(`Deleted message ${m.sequenceNumber}`);
          await refresh(); await peek();
        }) }, 'Delete')),
      h('h2', {}, 'System properties'), dl(sys),
      h('h2', {}, 'Application properties'), props.length ? dl(props) : h('span.muted', {}, 'none'),
      h('h2', {}, 'Body'), modeBtns, pre);
  }
  drawTabs();
  await peek();
  refreshTimer = setInterval(refresh, 3000);
}

function rulesView(rules) {
  if (!rules || !rules.length) return h('span.muted', {}, 'No rules: the subscription receives nothing.');
  return h('table', { id: 'rules' }, h('thead', {}, h('tr', {}, h('th', {}, 'Rule'), h('th', {}, 'Filter'), h('th', {}, 'Action'))),
    h('tbody', {}, rules.map((r) => {
      const f = r.filter;
      let filter;
      if (f === 'True') filter = 'TrueFilter (1=1)';
      else if (f === 'False') filter = 'FalseFilter (1=0)';
      else if (f && f.Sql) filter = `SQL: ${f.Sql.expression}`;
      else if (f && f.Correlation) {
        const c = Object.entries(f.Correlation).filter(([k, v]) => v !== null && !(k === 'properties' && !Object.keys(v).length));
        filter = `Correlation: ${c.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')}`;
      } else filter = JSON.stringify(f);
      const action = r.action ? `SQL: ${r.action.expression}` : '';
      return h('tr', {}, h('td', {}, r.name), h('td', {}, h('code', {}, filter)), h('td', {}, h('code', {}, action)));
    })));
}

// Properties from the ATOM description; edits are PUT back with If-Match: * (an update).
const READ_ONLY = new Set(['CreatedAt', 'UpdatedAt', 'AccessedAt', 'SizeInBytes', 'MessageCount', 'CountDetails',
  'SubscriptionCount', 'AuthorizationRules', 'EntityAvailabilityStatus', 'IsAnonymousAccessible', 'SupportOrdering',
  'RequiresSession', 'RequiresDuplicateDetection', 'EnablePartitioning', 'EnableExpress', 'IsExpress', 'DefaultRuleDescription']);
async function loadProps(path, kind) {
  const box = document.getElementById('props');
  try {
    const text = await (await call('GET', `/${encPath(path)}?api-version=2021-05`)).text();
    const doc = new DOMParser().parseFromString(text, 'application/xml');
    const desc = doc.getElementsByTagNameNS(SB_NS, DESC[kind])[0];
    if (!desc) throw new Error('No description in the answer');
    const inputs = [];
    const rows = [];
    for (const el of Array.from(desc.children)) {
      const name = el.localName;
      if (el.children.length) continue;
      const ro = READ_ONLY.has(name);
      const v = el.textContent;
      let input;
      if (name === 'Status') {
        input = h('select', { 'data-prop': name }, ['Active', 'Disabled', 'SendDisabled', 'ReceiveDisabled'].map((o) => h('option', { value: o }, o)));
        input.value = v;
      } else if (v === 'true' || v === 'false') {
        input = h('select', { 'data-prop': name, disabled: ro }, h('option', { value: 'true' }, 'true'), h('option', { value: 'false' }, 'false'));
        input.value = v;
      } else input = h('input', { 'data-prop': name, value: v, disabled: ro });
      inputs.push([el, input]);
      rows.push(h('label', {}, name), input);
    }
    const save = h('button.primary', { id: 'save-props', type: 'submit' }, 'Save');
    box.replaceChildren(h('form.form', {
      onsubmit: guarded(async (e) => {
        e.preventDefault();
        for (const [el, input] of inputs) el.textContent = input.value;
        for (const el of Array.from(desc.children)) if (READ_ONLY.has(el.localName) && el.localName !== 'RequiresSession' && el.localName !== 'RequiresDuplicateDetection') el.remove();
        await call('PUT', `/${encPath(path)}?api-version=2021-05`, {
          body: new XMLSerializer().serializeToString(doc),
          headers: { 'Content-Type': 'application/atom+xml', 'If-Match': '*' },
        });
        flash('Properties saved');
        loadProps(path, kind);
      }),
    }, rows, h('span'), h('div', {}, save)));
  } catch (e) {
    box.replaceChildren(h('span.reason', {}, e.message));
  }
}

function sendForm(path, onSent) {
  const f = (id, attrs = {}) => h('input', { id, ...attrs });
  const body = h('textarea', { id: 'send-body' }, '{"hello": "world"}');
  const ct = f('send-ct', { value: 'application/json' });
  const props = f('send-props', { placeholder: '{"priority": 1, "region": "eu"}' });
  const sid = f('send-session', { placeholder: 'session id (session entities)' });
  const subj = f('send-subject');
  const when = f('send-when', { type: 'datetime-local' });
  const count = f('send-count', { type: 'number', min: 1, max: 500, value: 1 });
  return h('form.form', {
    id: 'sendform',
    onsubmit: guarded(async (e) => {
      e.preventDefault();
      const bp = {};
      if (ct.value) bp.ContentType = ct.value;
      if (sid.value) bp.SessionId = sid.value;
      if (subj.value) bp.Label = subj.value;
      if (when.value) bp.ScheduledEnqueueTimeUtc = new Date(when.value).toUTCString();
      const up = props.value.trim() ? JSON.parse(props.value) : {};
      const n = Math.max(1, Math.min(500, Number(count.value) || 1));
      const batch = Array.from({ length: n }, () => ({ Body: body.value, BrokerProperties: bp, UserProperties: up }));
      await call('POST', `/${encPath(path)}/messages`, {
        body: JSON.stringify(batch), headers: { 'Content-Type': 'application/vnd.microsoft.servicebus.json' },
      });
      flash(`Sent ${n} message(s) to ${path}`);
      await onSent();
    }),
  },
  h('label', {}, 'Body'), body, h('label', {}, 'Content type'), ct,
  h('label', {}, 'Application properties (JSON)'), props, h('label', {}, 'Session id'), sid,
  h('label', {}, 'Subject'), subj, h('label', {}, 'Scheduled enqueue time (local)'), when,
  h('label', {}, 'Copies'), count, h('span'), h('div', {}, h('button.primary', { id: 'send', type: 'submit' }, 'Send')));
}

// ---- router: #/ and #/entity/{path} -------------------------------------------------------
async function route() {
  if (refreshTimer) { clearInterval(refreshTimer); refreshTimer = null; }
  const hash = location.hash.replace(/^#/, '') || '/';
  const m = /^\/entity\/(.+)$/.exec(hash);
  try {
    if (m) await entityPage(m[1].split('/').map(decodeURIComponent).join('/'));
    else await overview();
  } catch (e) { flash(e.message, true); }
}
window.addEventListener('hashchange', route);
route();
