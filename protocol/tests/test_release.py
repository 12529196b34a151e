"""The release's file URLs can only be the controller's own wheel route: a
release is what tells an agent where to send its bearer token."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from reprofarm_protocol.release import AgentRelease, ReleaseFile

NAME = "reprofarm_agent-0.1.0+srcabcdef012345-py3-none-any.whl"
FILE = {"filename": NAME, "sha256": "a" * 64, "bytes": 10, "url": f"/agent/wheels/{NAME}"}


def test_a_release_file_on_the_wheel_route_is_accepted():
    assert ReleaseFile.model_validate(FILE).url == f"/agent/wheels/{NAME}"


@pytest.mark.parametrize(
    "url",
    [
        f"https://elsewhere.example/agent/wheels/{NAME}",  # another host
        f"//elsewhere.example/agent/wheels/{NAME}",  # scheme-relative: another host too
        f"http://127.0.0.1:8600/agent/wheels/{NAME}",  # absolute, even if it looks local
        "/agent/wheels/reprofarm_agent-9.9.9-py3-none-any.whl",  # another file
        f"/api/v1/tokens?x=/agent/wheels/{NAME}",  # another route
        f"agent/wheels/{NAME}",  # not rooted: joined to a base path it could go anywhere
    ],
)
def test_a_release_file_elsewhere_is_refused_naming_the_field(url):
    with pytest.raises(ValidationError) as refused:
        AgentRelease.model_validate(
            {"version": "0.1.0", "files": [{**FILE, "url": url}], "requirements": "x==1"}
        )
    (error,) = refused.value.errors()
    assert error["loc"] == ("files", 0, "url"), error
    assert f"/agent/wheels/{NAME}" in error["msg"], error["msg"]
