"""Fixtures: the real `localzure` binary on ephemeral ports with a temporary data directory.

The binary logs the ports it bound (`listening on http://…`, `AMQP listening on amqp://…`);
the fixtures read them from its log, so tests never depend on fixed ports. Entities are created
through the REST ATOM API (the SDK's ServiceBusAdministrationClient cannot be pointed at a plain
HTTP endpoint), with the XML shapes src/http/atom.rs parses.
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
        # An Authorization header for the REST helpers (set when SAS validation is on).
        self.auth = None
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
        """SIGTERM, then check the shutdown was clean: exit status 0 and no ERROR or panic line
        in the log. A crash during a test, a hang on shutdown (killed after 30 s) or an error
        logged on the way fails the test that owns this server."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        text = self.read_log()
        bad = log_problems(text)
        assert self.proc.returncode == 0 and not bad, (
            f"localzure exited with {self.proc.returncode}; problem lines: {bad}\n{text}"
        )

    # ----- REST management ---------------------------------------------------------------------

    def _put(self, path, xml):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/{path}",
            data=xml.encode(),
            method="PUT",
            headers={"Content-Type": "application/atom+xml;type=entry;charset=utf-8"},
        )
        if self.auth:
            req.add_header("Authorization", self.auth)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status

    def delete(self, path):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/{path}", method="DELETE")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

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

    def create_correlation_rule(self, topic, sub, rule, **filter_fields):
        inner = "".join(f"<{k}>{v}</{k}>" for k, v in filter_fields.items())
        xml = (
            '<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml">'
            f'<RuleDescription xmlns="{SB_NS}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
            f'<Filter i:type="CorrelationFilter">{inner}</Filter></RuleDescription></content></entry>'
        )
        self._put(f"{topic}/Subscriptions/{sub}/Rules/{rule}", xml)


def log_problems(text):
    """The log lines at ERROR level or reporting a panic (colour codes stripped first)."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return [line for line in plain.splitlines() if re.search(r"\bERROR\b|panicked", line)]


def sas_token(uri, key_name, key, ttl=3600):
    """A SharedAccessSignature for `uri`, signed as the SDKs sign it."""
    import base64
    import hashlib
    import hmac
    import urllib.parse

    expiry = int(time.time()) + ttl
    sr = urllib.parse.quote_plus(uri)
    mac = hmac.new(key.encode(), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    sig = urllib.parse.quote_plus(base64.b64encode(mac).decode())
    return f"SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={key_name}"


@pytest.fixture(scope="session")
def server():
    if not os.path.exists(BINARY):
        pytest.fail(f"localzure binary not found at {BINARY}; build it first (cargo build)")
    d = tempfile.mkdtemp(prefix="localzure-sdk-")
    s = Server(d)
    yield s
    s.stop()


@pytest.fixture
def client(server):
    from azure.servicebus import ServiceBusClient

    with ServiceBusClient.from_connection_string(server.conn_str) as c:
        yield c


# ----- the management (ATOM) client ------------------------------------------------------------


def plain_http_transport():
    """A requests transport that sends the admin client's `https://` requests as `http://`.

    `ServiceBusAdministrationClient` always builds `https://{namespace}` (7.15,
    `management/_management_client.py`), and LocalZure has no TLS listener yet. This is the one
    place that knows it: when the TLS listener lands, return a transport that trusts the local
    CA instead (or `None` for the default) and every admin test follows.
    """
    from azure.core.pipeline.transport import RequestsTransport

    class PlainHttpTransport(RequestsTransport):
        def send(self, request, **kwargs):
            if request.url.startswith("https://"):
                request.url = "http://" + request.url[len("https://") :]
            return super().send(request, **kwargs)

    return PlainHttpTransport()


@pytest.fixture
def admin_server():
    """A server of its own, so list tests see exactly the entities they create."""
    if not os.path.exists(BINARY):
        pytest.fail(f"localzure binary not found at {BINARY}; build it first (cargo build)")
    s = Server(tempfile.mkdtemp(prefix="localzure-admin-"))
    yield s
    s.stop()


@pytest.fixture
def admin_client(admin_server):
    """azure-servicebus's ServiceBusAdministrationClient on `admin_server`'s HTTP port, from
    the development-emulator connection string as an application would build it."""
    from azure.servicebus.management import ServiceBusAdministrationClient

    conn = (
        f"Endpoint=sb://localhost:{admin_server.http_port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )
    with ServiceBusAdministrationClient.from_connection_string(conn, transport=plain_http_transport()) as c:
        yield c
