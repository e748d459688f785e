"""SAS validation and the admin API's protection apply the same on TLS connections as in the
clear (issue 17: the TLS stream is handed to the same HTTP and AMQP engines with the real peer
address). Each check runs over HTTPS or AMQPS, trusting only the generated CA."""

import ssl
import urllib.error
import urllib.request
import uuid

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusConnectionError
from azure.servicebus.management import ServiceBusAdministrationClient

from conftest import SAS_SECRET

GOOD_KEY = f"SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={SAS_SECRET}"
BAD_KEY = "SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=bm90LXRoZS1rZXk="


def test_admin_client_over_https_needs_the_right_key(sas_server):
    port = sas_server.ports["https"]
    q = "q" + uuid.uuid4().hex[:8]
    good = ServiceBusAdministrationClient.from_connection_string(
        sas_server.conn_str(port, key=GOOD_KEY), connection_verify=sas_server.ca
    )
    with good:
        good.create_queue(q)
        assert good.get_queue(q).name == q
    bad = ServiceBusAdministrationClient.from_connection_string(
        sas_server.conn_str(port, key=BAD_KEY), connection_verify=sas_server.ca
    )
    with bad:
        with pytest.raises(ClientAuthenticationError):
            bad.get_queue(q)


def test_data_client_over_amqps_needs_the_right_key(sas_server):
    port = sas_server.ports["amqps"]
    q = "q" + uuid.uuid4().hex[:8]
    admin = ServiceBusAdministrationClient.from_connection_string(
        sas_server.conn_str(sas_server.ports["https"], key=GOOD_KEY), connection_verify=sas_server.ca
    )
    with admin:
        admin.create_queue(q)

    def client(key):
        return ServiceBusClient.from_connection_string(
            sas_server.conn_str(port, emulator=False, key=key),
            connection_verify=sas_server.ca,
            custom_endpoint_address=f"sb://localhost:{port}",
            retry_total=0,
        )

    with client(GOOD_KEY) as c, c.get_queue_sender(q) as sender:
        sender.send_messages(ServiceBusMessage("signed"))
    with client(BAD_KEY) as c:
        # The CBS put-token is refused with 401 as in the clear. With `custom_endpoint_address`
        # set, azure-servicebus 7.15 maps the authentication failure to
        # ServiceBusConnectionError on purpose ("for uamqp parity, invalid custom endpoint
        # address raises ServiceBusConnectionError": `_transport/_pyamqp_transport.py`,
        # `_handle_amqp_exception_with_condition`); the emulator path raises
        # ServiceBusAuthenticationError. The cause is the server's 401 either way.
        with pytest.raises(ServiceBusConnectionError) as info:
            with c.get_queue_sender(q) as sender:
                sender.send_messages(ServiceBusMessage("forged"), timeout=15)
        cause = info.value.__cause__ or info.value.__context__
        while cause is not None and type(cause).__name__ != "TokenAuthFailure":
            cause = cause.__cause__ or cause.__context__
        assert cause is not None and "Status code: 401" in str(cause), repr(info.value)
    with client(GOOD_KEY) as c, c.get_queue_receiver(q, max_wait_time=5) as receiver:
        assert [str(m) for m in receiver.peek_messages(max_message_count=5)] == ["signed"]


def test_admin_api_refuses_browser_style_requests_over_https(server):
    """`/$admin` over HTTPS: a text/plain POST (what a web page can send without a preflight)
    and a foreign Origin are refused with 403, as over plain HTTP; the CLI's header passes."""
    ctx = ssl.create_default_context(cafile=server.ca)
    base = f"https://localhost:{server.ports['https']}/$admin"

    def post(path, headers):
        req = urllib.request.Request(base + path, data=b"", method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert post("/snapshot", {"Content-Type": "text/plain"}) == 403
    assert post("/snapshot", {"X-LocalZure-Admin": "1", "Origin": "https://evil.example"}) == 403
    assert post("/snapshot", {"X-LocalZure-Admin": "1"}) == 200
