"""Fixtures for the interop suite: the real `localzure` binary on ephemeral ports (the same
start-up as tests/python/conftest.py, copied so this suite runs in its own virtualenvs), plus
REST helpers for checks from the HTTP side.
"""

import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get(
    "LOCALZURE_BIN",
    os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "localzure"),
)
SB_NS = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"


class Server:
    """A running localzure process."""

    def __init__(self, data_dir, env_extra=None):
        self.data_dir = data_dir
        self.log_path = os.path.join(data_dir, "server.log")
        env = dict(os.environ)
        env.update(
            {
                "LOCALZURE_HTTP_PORT": "0",
                "LOCALZURE_AMQP_PORT": "0",
                "LOCALZURE_LOG": "info",
                "LOCALZURE_SQLITE_PATH": os.path.join(data_dir, "servicebus.db"),
                "LOCALZURE_JSON_PATH": data_dir,
            }
        )
        env.update(env_extra or {})
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([BINARY, "start"], stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=data_dir)
        self.http_port = None
        self.amqp_port = None
        deadline = time.time() + 30
        while time.time() < deadline:
            text = self.read_log()
            h = re.search(r"listening on http://[^:]+:(\d+)", text)
            a = re.search(r"AMQP listening on amqp://[^:]+:(\d+)", text)
            if h and a:
                self.http_port, self.amqp_port = int(h.group(1)), int(a.group(1))
                return
            if self.proc.poll() is not None:
                raise RuntimeError("localzure exited early:\n" + text)
            time.sleep(0.05)
        raise RuntimeError("localzure did not report its ports:\n" + self.read_log())

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    @property
    def conn_str(self):
        return (
            f"Endpoint=sb://localhost:{self.amqp_port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    # ----- REST management ---------------------------------------------------------------------

    def _put(self, path, xml):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/{path}",
            data=xml.encode(),
            method="PUT",
            headers={"Content-Type": "application/atom+xml;type=entry;charset=utf-8"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status

    @staticmethod
    def _entry(kind, fields):
        inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
        return (
            '<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml">'
            f'<{kind} xmlns="{SB_NS}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">{inner}</{kind}>'
            "</content></entry>"
        )

    def create_queue(self, name=None, **fields):
        name = name or "q" + uuid.uuid4().hex[:10]
        self._put(name, self._entry("QueueDescription", fields))
        return name

    def create_topic(self, name=None):
        name = name or "t" + uuid.uuid4().hex[:10]
        self._put(name, self._entry("TopicDescription", {}))
        return name

    def create_subscription(self, topic, name, **fields):
        self._put(f"{topic}/Subscriptions/{name}", self._entry("SubscriptionDescription", fields))
        return name

    def rest_receive(self, queue, timeout=5):
        """Receive-and-delete over REST; (status, body bytes, content type)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/{queue}/messages/head?timeout={timeout}", method="DELETE"
        )
        with urllib.request.urlopen(req, timeout=timeout + 10) as r:
            return r.status, r.read(), r.headers.get("Content-Type")

    @property
    def amqp_url(self):
        return f"amqp://127.0.0.1:{self.amqp_port}"


@pytest.fixture(scope="session")
def server():
    if not os.path.exists(BINARY):
        pytest.fail(f"localzure binary not found at {BINARY}; build it first (cargo build)")
    d = tempfile.mkdtemp(prefix="localzure-interop-")
    s = Server(d)
    yield s
    s.stop()
    if s.proc.returncode not in (0, None):
        print(s.read_log())
