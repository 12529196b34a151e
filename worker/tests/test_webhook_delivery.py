"""A webhook is sent to the address that was checked, with its host's name in the request
and for TLS: the request as it leaves the client is captured (httpx's MockTransport stands
for the network), the resolver is a plain function (its answers are the input)."""

import httpx
import pytest
from reprofarm_protocol.webhook_targets import ForbiddenTarget
from reprofarm_worker.webhooks import deliver


def test_the_post_goes_to_the_checked_address_under_the_hosts_name() -> None:
    seen: list[httpx.Request] = []

    def network(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    with httpx.Client(transport=httpx.MockTransport(network)) as client:
        status = deliver(
            client,
            url="https://hooks.example:8443/study?x=1",
            body=b"{}",
            secret=b"s",
            delivery=7,
            resolve=lambda host, port: ["93.184.216.34"],
        )
    assert status == 204
    (sent,) = seen
    assert str(sent.url) == "https://93.184.216.34:8443/study?x=1"
    assert sent.headers["Host"] == "hooks.example:8443"
    assert sent.extensions["sni_hostname"] == "hooks.example"
    assert sent.headers["X-Reprofarm-Delivery"] == "7"


def test_a_name_that_now_resolves_inside_is_not_sent() -> None:
    def network(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    with (
        httpx.Client(transport=httpx.MockTransport(network)) as client,
        pytest.raises(ForbiddenTarget, match=r"169\.254\.169\.254"),
    ):
        deliver(
            client,
            url="http://hooks.example/study",
            body=b"{}",
            secret=b"s",
            delivery=7,
            resolve=lambda host, port: ["169.254.169.254"],
        )
