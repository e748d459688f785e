"""Fixtures for the interop suite: the real `localzure` binary on ephemeral ports, started by
the SDK suite's `Server` (tests/python/conftest.py, loaded under another module name so this
suite can run in its own virtualenv), plus REST helpers for checks from the HTTP side.
"""

import importlib.util
import os
import tempfile
import urllib.request

import pytest

_spec = importlib.util.spec_from_file_location(
    "sdk_conftest", os.path.join(os.path.dirname(__file__), "..", "python", "conftest.py")
)
sdk_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sdk_conftest)
BINARY = sdk_conftest.BINARY


class Server(sdk_conftest.Server):
    """The SDK suite's server, with what the interop checks add."""

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
    s = Server(tempfile.mkdtemp(prefix="localzure-interop-"))
    yield s
    s.stop()
