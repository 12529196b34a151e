"""Where a webhook may go: public addresses, or hosts an admin listed; never the
controller's own network by a submitter's choice, not even through a name that resolves
there (the resolver is a plain function here: DNS answers are the input under test)."""

import pytest
from reprofarm_protocol.webhook_targets import (
    ForbiddenTarget,
    address_to_send,
    check_host,
)

PRIVATE = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.9",
    "192.168.1.1",
    "169.254.169.254",  # a cloud's metadata service
    "0.0.0.0",
    "::1",
    "fd00::1",
    "fe80::1",
    "::ffff:127.0.0.1",  # an IPv4 loopback written as IPv6
    "224.0.0.1",
]


@pytest.mark.parametrize("address", PRIVATE)
def test_a_private_address_is_refused_at_submit_and_at_send(address: str) -> None:
    with pytest.raises(ForbiddenTarget, match="not a public address"):
        check_host(address, allowed=[])
    with pytest.raises(ForbiddenTarget, match="REPROFARM_WEBHOOK_HOSTS"):
        address_to_send("hooks.example", 443, allowed=[], resolve=lambda h, p: [address])


def test_a_name_is_checked_when_it_is_sent_and_every_address_must_be_public() -> None:
    check_host("hooks.example", allowed=[])  # a name passes at submit
    both = ["93.184.216.34", "10.0.0.5"]  # one public answer does not excuse a private one
    with pytest.raises(ForbiddenTarget, match=r"10\.0\.0\.5"):
        address_to_send("hooks.example", 443, allowed=[], resolve=lambda h, p: both)
    target = address_to_send(
        "hooks.example", 443, allowed=[], resolve=lambda h, p: ["93.184.216.34"]
    )
    assert (target.address, target.host) == ("93.184.216.34", "hooks.example")


def test_a_host_an_admin_listed_may_be_private_and_is_not_resolved() -> None:
    check_host("10.0.0.7", allowed=["10.0.0.7"])

    def never(host: str, port: int) -> list[str]:
        raise AssertionError("a listed host is connected to as named")

    target = address_to_send("Hooks.Lab", 80, allowed=["hooks.lab"], resolve=never)
    assert target.address is None


def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(ForbiddenTarget, match="nothing"):
        address_to_send("gone.example", 80, allowed=[], resolve=lambda h, p: [])
