"""Checking the controller's signature of a release before a self-update.

The public key is the one install.ps1 wrote into agent.env
(``REPROFARM_RELEASE_PUBLIC_KEY``) when the machine was installed: what the
controller says later cannot change it. A release whose signature is missing,
malformed or made by another key is refused, with the reason, before anything
is downloaded (reprofarm_api.install.signing makes the signature).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from reprofarm_protocol.release import AgentRelease

from reprofarm_agent.errors import AgentError


class ReleaseSignatureError(AgentError):
    """The release is not signed by the key this agent was installed with."""


def public_key(text: str) -> Ed25519PublicKey:
    """The key as agent.env holds it: 32 raw bytes, base64."""
    if not text:
        raise ReleaseSignatureError(
            "release_public_key: no REPROFARM_RELEASE_PUBLIC_KEY in agent.env (installed "
            "before releases were signed?): re-run install.ps1 to fix the controller's key"
        )
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ReleaseSignatureError(
            f"release_public_key: {text[:60]!r} is not an Ed25519 public key (32 bytes, base64)"
        ) from None


def verify(release: AgentRelease, key_text: str) -> None:
    """Return if ``release`` is signed by ``key_text``; ReleaseSignatureError
    saying why not otherwise."""
    key = public_key(key_text)
    if release.signature is None:
        raise ReleaseSignatureError(f"release {release.version} is not signed")
    try:
        key.verify(base64.b64decode(release.signature), release.signed_bytes())
    except InvalidSignature:
        raise ReleaseSignatureError(
            f"release {release.version}: its signature does not match its content and this "
            "machine's release key (tampered with, or signed by another controller's key)"
        ) from None
