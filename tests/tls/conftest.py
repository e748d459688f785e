"""Fixtures for the TLS suite: the real `localzure` binary with TLS on (HTTPS and AMQPS on
ephemeral ports, a generated CA in a temporary directory). Clients trust only that CA.

Ports are read from the start-up log (`listening on http://…`, `AMQP listening on amqp://…`,
`HTTPS listening on https://…`, `AMQPS listening on amqps://…`); nothing uses fixed ports.
"""

import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get(
    "LOCALZURE_BIN",
    os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "localzure"),
)
KEY = "SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE"


class Server:
    def __init__(self, data_dir, env_extra=None):
        self.data_dir = data_dir
        self.tls_dir = os.path.join(data_dir, "tls")
        self.ca = os.path.join(self.tls_dir, "ca.pem")
        self.log_path = os.path.join(data_dir, "server.log")
        env = dict(os.environ)
        env.update(
            {
                "LOCALZURE_HTTP_PORT": "0",
                "LOCALZURE_AMQP_PORT": "0",
                "LOCALZURE_HTTPS_PORT": "0",
                "LOCALZURE_AMQPS_PORT": "0",
                "LOCALZURE_TLS_DIR": self.tls_dir,
                "LOCALZURE_LOG": "info",
            }
        )
        env.update(env_extra or {})
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([BINARY, "start"], stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=data_dir)
        self.ports = {}
        patterns = {
            "http": r"(?<![A-Z] )listening on http://\S*:(\d+)",
            "amqp": r"AMQP listening on amqp://\S*:(\d+)",
            "https": r"HTTPS listening on https://\S*:(\d+)",
            "amqps": r"AMQPS listening on amqps://\S*:(\d+)",
        }
        deadline = time.time() + 30
        while time.time() < deadline:
            text = self.read_log()
            found = {k: re.search(p, text) for k, p in patterns.items()}
            if all(found.values()):
                self.ports = {k: int(m.group(1)) for k, m in found.items()}
                return
            if self.proc.poll() is not None:
                raise RuntimeError("localzure exited early:\n" + text)
            time.sleep(0.05)
        raise RuntimeError("localzure did not report its ports:\n" + self.read_log())

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def conn_str(self, port, emulator=True, key=KEY):
        tail = "UseDevelopmentEmulator=true;" if emulator else ""
        return f"Endpoint=sb://localhost:{port};{key};{tail}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        text = self.read_log()
        plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
        bad = [l for l in plain.splitlines() if re.search(r"\bERROR\b|panicked", l)]
        assert self.proc.returncode == 0 and not bad, f"exit {self.proc.returncode}; {bad}\n{text}"


@pytest.fixture(scope="session")
def server():
    if not os.path.exists(BINARY):
        pytest.fail(f"localzure binary not found at {BINARY}; build it first (cargo build)")
    s = Server(tempfile.mkdtemp(prefix="localzure-tls-"))
    # The CA file named in the start-up log is the one clients trust.
    assert s.ca in s.read_log(), s.read_log()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def wrong_ca():
    """A CA that did not sign the server certificate: a second generated one."""
    d = tempfile.mkdtemp(prefix="localzure-wrong-ca-")
    env = dict(os.environ, LOCALZURE_TLS_DIR=os.path.join(d, "tls"))
    pem = subprocess.run([BINARY, "tls", "ca"], env=env, check=True, capture_output=True, text=True).stdout
    path = os.path.join(d, "wrong-ca.pem")
    with open(path, "w") as f:
        f.write(pem)
    return path


SAS_SECRET = "c2VjcmV0LWtleS1mb3ItdGxzLXRlc3Rz"


@pytest.fixture(scope="session")
def sas_server():
    """A second server with SAS validation on (`LOCALZURE_SAS_KEY_NAME` / `LOCALZURE_SAS_KEY`)."""
    s = Server(
        tempfile.mkdtemp(prefix="localzure-tls-sas-"),
        {
            "LOCALZURE_SAS_KEY_NAME": "RootManageSharedAccessKey",
            "LOCALZURE_SAS_KEY": SAS_SECRET,
        },
    )
    yield s
    s.stop()
