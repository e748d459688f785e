#!/usr/bin/env python3
"""Attack figures for README's Reliability section (issue 18): runs the release binary, attacks
it from this separate process (stdlib only) and measures what another client sees meanwhile.

    cargo build --release && python3 scripts/attack.py target/release/localzure

For each attack it prints the attacker's request cost and `/health` latency (a fresh connection
every 20 ms, p50 / p99 / max) plus a REST send on its own keep-alive connection (the "other
client"); for the connection floods, connections held and RSS per connection (VmRSS from
/proc). `ATTACK_SCALE=0.1` runs every attack at a tenth of its size (a smoke run); `ATTACK_ONLY=sql_like,
slowloris` runs only those.
"""

import asyncio
import http.client
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

SCALE = float(os.environ.get("ATTACK_SCALE", "1"))


def scaled(n):
    return max(1, int(n * SCALE))


# ---- the server ---------------------------------------------------------------------------


class Server:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="localzure-attack-")
        self.log_path = os.path.join(self.dir, "server.log")
        env = dict(
            os.environ,
            LOCALZURE_HTTP_PORT="0",
            LOCALZURE_AMQP_PORT="0",
            LOCALZURE_LOG="warn,localzure=info",
            LOCALZURE_STORAGE_TYPE="sqlite",
        )
        self.proc = subprocess.Popen(
            [binary, "start"], stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, env=env, cwd=self.dir
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            text = open(self.log_path).read()
            http = re.search(r"(?<![A-Z] )listening on http://\S*:(\d+)", text)
            amqp = re.search(r"AMQP listening on amqp://\S*:(\d+)", text)
            if http and amqp:
                self.http, self.amqp = int(http.group(1)), int(amqp.group(1))
                return
            if self.proc.poll() is not None:
                sys.exit("localzure exited:\n" + text)
            time.sleep(0.05)
        sys.exit("localzure did not report its ports")

    def rss_mib(self):
        status = open(f"/proc/{self.proc.pid}/status").read()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def request(self, method, path, body=None, headers=None, timeout=60):
        c = http.client.HTTPConnection("127.0.0.1", self.http, timeout=timeout)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def entity_xml(kind, inner=""):
    return (
        '<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml">'
        f'<{kind} xmlns:i="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect">'
        f"{inner}</{kind}></content></entry>"
    )


ATOM = {"Content-Type": "application/atom+xml"}


# ---- what the other clients see ----------------------------------------------------------


class Observer:
    """Polls /health on fresh connections and sends on one keep-alive connection, recording
    latencies, until stopped."""

    def __init__(self, server):
        self.server = server
        self.health, self.sends = [], []
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self.poll_health), threading.Thread(target=self.send_loop)]

    def poll_health(self):
        while not self.stop_flag.is_set():
            t = time.perf_counter()
            try:
                status, _ = self.server.request("GET", "/health", timeout=120)
                ok = status == 200
            except OSError:
                ok = False
            self.health.append((time.perf_counter() - t) * 1000 if ok else float("inf"))
            self.stop_flag.wait(0.02)

    def send_loop(self):
        c = http.client.HTTPConnection("127.0.0.1", self.server.http, timeout=120)
        while not self.stop_flag.is_set():
            t = time.perf_counter()
            try:
                c.request("POST", "/observer/messages", body=b"x" * 1024, headers={"Content-Type": "text/plain"})
                r = c.getresponse()
                r.read()
                ok = r.status == 201
            except (OSError, http.client.HTTPException):
                ok = False
                c = http.client.HTTPConnection("127.0.0.1", self.server.http, timeout=120)
            self.sends.append((time.perf_counter() - t) * 1000 if ok else float("inf"))
            self.stop_flag.wait(0.02)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join()


def summary(samples):
    if not samples:
        return "no samples"
    s = sorted(samples)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]
    fmt = lambda v: "failed" if v == float("inf") else f"{v:.1f}"
    return f"p50 {fmt(pick(0.5))} / p99 {fmt(pick(0.99))} / max {fmt(s[-1])} ms (n={len(s)})"


ROWS = []


def report(name, cost, obs, extra=""):
    row = (name, cost, summary(obs.health), summary(obs.sends), extra)
    ROWS.append(row)
    print(f"== {name}\n   attacker: {cost}\n   /health: {row[2]}\n   send: {row[3]}" + (f"\n   {extra}" if extra else ""))
    sys.stdout.flush()


def timed_parallel(n, fn):
    """Runs fn() in n threads at once; returns the per-call durations in ms and results."""
    out = [None] * n

    def run(i):
        t = time.perf_counter()
        r = fn()
        out[i] = ((time.perf_counter() - t) * 1000, r)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


# ---- HTTP attacks --------------------------------------------------------------------------


def baseline(server):
    with Observer(server) as obs:
        time.sleep(2)
    report("baseline (no attack)", "-", obs)


def raw_put(server, path, body):
    """A PUT that reads the answer even when the server answers (and closes) before the whole
    body is sent: the status, or the error the client saw."""
    s = socket.create_connection(("127.0.0.1", server.http))
    s.settimeout(120)
    head = f"PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/atom+xml\r\nContent-Length: {len(body)}\r\n\r\n"
    try:
        s.sendall(head.encode() + body)
    except OSError:
        pass  # answered early: read what was answered
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        return f"error {e}"
    finally:
        s.close()
    m = re.match(rb"HTTP/1.1 (\d+)", data)
    return int(m.group(1)) if m else f"no answer ({data[:40]!r})"


def atom_attributes(server):
    # 80,000 short attributes keep the body under the 1 MiB body cap, so the parser sees it.
    n = scaled(80_000)
    attrs = " ".join(f'a{i:x}=""' for i in range(n))
    body = entity_xml("QueueDescription").replace("<QueueDescription ", f"<QueueDescription {attrs} ", 1)
    with Observer(server) as obs:
        time.sleep(0.3)
        res = timed_parallel(2, lambda: raw_put(server, "/atomq", body.encode()))
        time.sleep(0.3)
    cost = ", ".join(f"{status} in {ms:.0f} ms" for ms, status in res)
    report(f"ATOM PUT with {n:,} attributes on one element ({len(body) // 1024} KiB, 2 at once)", cost, obs)


def sql_like(server):
    topic = "liketopic"
    server.request("PUT", f"/{topic}", body=entity_xml("TopicDescription").encode(), headers=ATOM)
    pattern = "%" + "a" * 1000 + "b"
    for i in range(20):
        server.request("PUT", f"/{topic}/subscriptions/s{i}", body=entity_xml("SubscriptionDescription").encode(), headers=ATOM)
        rule = entity_xml(
            "RuleDescription", f"<Filter i:type=\"SqlFilter\"><SqlExpression>p LIKE '{pattern}'</SqlExpression></Filter>"
        )
        server.request("PUT", f"/{topic}/subscriptions/s{i}/rules/like", body=rule.encode(), headers=ATOM)
    value = '"' + "a" * 60_000 + '"'
    sends = scaled(40)

    def sender():
        statuses = []
        for _ in range(sends // 4 or 1):
            statuses.append(
                server.request("POST", f"/{topic}/messages", body=b"x", headers={"Content-Type": "text/plain", "p": value})[0]
            )
        return statuses

    with Observer(server) as obs:
        time.sleep(0.3)
        t = time.perf_counter()
        res = timed_parallel(4, sender)
        total = time.perf_counter() - t
        time.sleep(0.3)
    count = sum(len(r) for _, r in res)
    statuses = sorted({s for _, r in res for s in r})
    cost = f"{count} sends (4 at once) in {total * 1000:.0f} ms: {total * 1000 / count * 4:.1f} ms per send, statuses {statuses}"
    report("SQL LIKE '%'+'a'x1000+'b', 20 subscriptions, 60,000-char property", cost, obs)


def slowloris(server):
    n = scaled(300)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", server.http))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        socks.append(s)
    with Observer(server) as obs:
        end = time.time() + 5
        while time.time() < end:
            for s in socks:
                try:
                    s.sendall(b"X-a: b\r\n")
                except OSError:
                    pass
            time.sleep(1)
    for s in socks:
        s.close()
    report(f"slowloris: {n} connections sending a header line a second", "-", obs)


def idle_keepalive(server):
    n = scaled(5_000)
    time.sleep(0.5)
    before = server.rss_mib()
    socks = []
    with Observer(server) as obs:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", server.http))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            socks.append(s)
        for s in socks:
            s.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(4096)
        time.sleep(0.5)
        held, fds = server.rss_mib(), server.fds()
    for s in socks:
        s.close()
    deadline = time.time() + 10
    after = server.rss_mib()
    while time.time() < deadline and after > before + (held - before) * 0.3:
        time.sleep(0.2)
        after = server.rss_mib()
    per = (held - before) * 1024 / n
    extra = f"held {n:,} (server fds {fds:,}); RSS {before:.1f} -> {held:.1f} MiB ({per:.1f} KiB per connection) -> {after:.1f} MiB after close"
    report(f"{n:,} idle keep-alive HTTP connections", "-", obs, extra)


# ---- AMQP attacks (hand-built frames: AMQP 1.0 §2.3 framing, §1.6 encodings) -------------


def frame(body, ch=0, kind=0):
    return struct.pack(">IBBH", 8 + len(body), 2, kind, ch) + body


def described(code, *fields):
    items = b"".join(fields)
    return b"\x00\x53" + bytes([code]) + b"\xd0" + struct.pack(">II", 4 + len(items), len(fields)) + items


def string(s):
    b = s.encode()
    return b"\xa1" + bytes([len(b)]) + b


def symbol(s):
    b = s.encode()
    return b"\xa3" + bytes([len(b)]) + b


def uint(v):
    return b"\x70" + struct.pack(">I", v)


NULL, FALSE = b"\x40", b"\x42"
SASL_HEADER, AMQP_HEADER = b"AMQP\x03\x01\x00\x00", b"AMQP\x00\x01\x00\x00"


async def read_frame(reader):
    size, doff, kind, ch = struct.unpack(">IBBH", await reader.readexactly(8))
    body = await reader.readexactly(size - 8)
    return ch, body[(doff * 4) - 8 :]


def performative(body):
    # descriptor: 0x00 0x53 <code>
    return body[2] if len(body) > 2 and body[:2] == b"\x00\x53" else None


async def amqp_open(port, channel_max=65535):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(SASL_HEADER)
    await reader.readexactly(8)
    await read_frame(reader)  # mechanisms
    writer.write(frame(described(0x41, symbol("ANONYMOUS")), kind=1))
    await read_frame(reader)  # outcome
    writer.write(AMQP_HEADER)
    await reader.readexactly(8)
    open_ = described(0x10, string("attack"), string("localhost"), uint(65536), b"\x60" + struct.pack(">H", channel_max))
    writer.write(frame(open_))
    await read_frame(reader)  # open
    return reader, writer


def amqp_connection_flood(server):
    n = scaled(3_000)
    before = server.rss_mib()

    async def run():
        conns, failed = [], 0
        for i in range(0, n, 100):
            results = await asyncio.gather(*[amqp_open(server.amqp) for _ in range(min(100, n - i))], return_exceptions=True)
            for r in results:
                if isinstance(r, Exception):
                    failed += 1
                else:
                    conns.append(r)
        await asyncio.sleep(0.5)
        held, fds = server.rss_mib(), server.fds()
        await asyncio.sleep(2)
        for _, w in conns:
            w.close()
        return len(conns), failed, held, fds

    with Observer(server) as obs:
        t = time.perf_counter()
        ok, failed, held, fds = asyncio.run(run())
        took = time.perf_counter() - t
    per = (held - before) * 1024 / max(ok, 1)
    extra = f"held {ok:,} open ({failed} failed; server fds {fds:,}); RSS {before:.1f} -> {held:.1f} MiB ({per:.1f} KiB per connection)"
    report(f"{n:,} AMQP connections (SASL ANONYMOUS + open), held together", f"opened in {took:.1f} s", obs, extra)


def amqp_session_link_flood(server):
    sessions, links = scaled(65_535), scaled(50_000)
    server.request("PUT", "/floodq", body=entity_xml("QueueDescription").encode(), headers=ATOM)
    before = server.rss_mib()

    async def flood(frames, wanted, begin_first):
        """Writes `frames` 500 at a time, each batch once the previous one is answered (so the
        server's refusal is not lost in a reset of unread input); counts answers of kind
        `wanted` until the server ends the session or connection."""
        reader, writer = await amqp_open(server.amqp)
        if begin_first:
            writer.write(frame(described(0x11, NULL, uint(0), uint(100), uint(100))))
            await read_frame(reader)
        answered, refusal, sent = 0, None, 0
        batch = []
        frames = iter(frames)
        try:
            while refusal is None:
                batch = [f for _, f in zip(range(500), frames)]
                if not batch:
                    break
                writer.write(b"".join(batch))
                await writer.drain()
                sent += len(batch)
                while answered < sent and refusal is None:
                    _, body = await asyncio.wait_for(read_frame(reader), 30)
                    code = performative(body)
                    if code == wanted:
                        answered += 1
                    elif code in (0x16, 0x17, 0x18):  # detach / end / close
                        refusal = body
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as e:
            refusal = refusal or str(e).encode()
        held = server.rss_mib()
        writer.close()
        return answered, refusal, held

    def begins():
        frames = (frame(described(0x11, NULL, uint(0), uint(100), uint(100)), ch=ch) for ch in range(sessions))
        return flood(frames, 0x11, False)

    def attaches():
        source = described(0x28, string("attacker"))
        target = described(0x29, string("floodq"))
        frames = (
            frame(described(0x12, string(f"l{h}"), uint(h), FALSE, NULL, NULL, source, target)) for h in range(links)
        )
        return flood(frames, 0x12, True)

    def cond(body):
        m = re.search(rb"amqp:[a-z:-]+", body or b"")
        return m.group(0).decode() if m else "none"

    with Observer(server) as obs:
        answered, closed, held1 = asyncio.run(begins())
    report(
        f"{sessions:,} begins on one AMQP connection",
        f"{answered:,} sessions answered, then {cond(closed)}",
        obs,
        f"RSS {before:.1f} -> {held1:.1f} MiB",
    )
    with Observer(server) as obs:
        answered, refused, held2 = asyncio.run(attaches())
    report(
        f"{links:,} attaches on one AMQP session",
        f"{answered:,} links answered, first refusal {cond(refused)}",
        obs,
        f"RSS {before:.1f} -> {held2:.1f} MiB",
    )


def main():
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/localzure")
    server = Server(binary)
    server.request("PUT", "/observer", body=entity_xml("QueueDescription").encode(), headers=ATOM)
    try:
        print(f"localzure {binary}, scale {SCALE}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        attacks = [baseline, atom_attributes, sql_like, slowloris, idle_keepalive, amqp_connection_flood, amqp_session_link_flood]
        only = os.environ.get("ATTACK_ONLY")  # e.g. ATTACK_ONLY=slowloris,sql_like
        for attack in attacks:
            if not only or attack.__name__ in only.split(","):
                attack(server)
        status, _ = server.request("GET", "/health")
        assert status == 200, f"/health after the attacks: {status}"
    finally:
        server.stop()
    print("\n| attack | attacker's cost / outcome | `/health` latency | a REST send meanwhile | held / memory |")
    print("|---|---|---|---|---|")
    for name, cost, health, send, extra in ROWS:
        print(f"| {name} | {cost} | {health} | {send} | {extra} |")


if __name__ == "__main__":
    main()
