"""RSS of the server with N idle keep-alive HTTP connections, and after they close (issue 18
item 5). Not a pytest module: run `python3 tests/tls/idle_memory.py target/release/localzure 5000`.
The server trims freed heap pages after connections close (src/net/trim.rs), so RSS returns near
its start-up value within a few seconds."""
import os, re, resource, socket, subprocess, sys, tempfile, time
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
binary = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
d = tempfile.mkdtemp(); log = open(os.path.join(d, "log"), "w")
env = dict(os.environ, LOCALZURE_HTTP_PORT="0", LOCALZURE_AMQP_PORT="0", LOCALZURE_LOG="info")
p = subprocess.Popen([binary, "start"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=d)
port = None
for _ in range(300):
    m = re.search(r"listening on http://\S*:(\d+)", open(os.path.join(d, "log")).read())
    if m: port = int(m.group(1)); break
    time.sleep(0.05)
def rss(): return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{p.pid}/status").read()).group(1)) // 1024
time.sleep(0.5); base = rss()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    socks.append(s)
for s in socks:
    s.settimeout(10); data = b""
    while b"healthy" not in data:
        data += s.recv(4096)
time.sleep(0.5); held = rss()
for s in socks: s.close()
time.sleep(7); after = rss()
print(f"{n} idle keep-alive connections: RSS {base} MB -> {held} MB held -> {after} MB after close")
p.terminate(); p.wait()
