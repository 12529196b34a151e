"""The controller's release signing key (Ed25519) and the signing of releases.

Why: an agent updates itself from whatever release the controller serves, and
runs it as SYSTEM. TLS and the agent's token prove little about what arrives
(a proxy in between, a mirror of the wheels, a controller impersonated on plain
HTTP). The public key is fixed on the lab machine when it is installed
(install.ps1 writes it into agent.env), and the agent installs only a release
signed by the matching private key.

What it does not protect: the controller signs whatever its wheels folder and
sources hold when a release is made, so anyone who can write those on the
controller gets a validly signed release; and an older signed release, replayed,
is accepted (versions are not ordered). Signing offline, and refusing versions
older than the installed one, would close both.

The key: ``REPROFARM_RELEASE_SIGNING_KEY`` (a PEM file, PKCS#8, unencrypted),
else ``<data dir>/release-signing-key.pem``, created at first use with mode
0600. Creation is race-free across api processes sharing the data dir: each
writes its own temporary file and links it into place; the first link wins and
the others read the winner's key.
"""

from __future__ import annotations

import base64
import contextlib
import os
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.release import AgentRelease

from reprofarm_api.install.wheels import ReleaseUnavailableError

KEY_FILE_NAME = "release-signing-key.pem"


def key_path(settings: ControllerSettings) -> Path:
    return settings.release_signing_key or settings.data_dir / KEY_FILE_NAME


def load_or_create(settings: ControllerSettings) -> Ed25519PrivateKey:
    """The release key; created under the data dir when no key file is set.
    ReleaseUnavailableError when a set key file is missing or not an Ed25519 key."""
    path = key_path(settings)
    if not path.is_file():
        if settings.release_signing_key is not None:
            raise ReleaseUnavailableError(
                f"REPROFARM_RELEASE_SIGNING_KEY: {path} does not exist (an Ed25519 private "
                "key, PEM; unset it to have the controller create one in its data dir)"
            )
        _create(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ReleaseUnavailableError(f"release signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseUnavailableError(
            f"release signing key {path}: a {type(key).__name__}, not an Ed25519 key"
        )
    return key


def _create(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        with contextlib.suppress(FileExistsError):  # another process made it first: keep theirs
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The public key as install.ps1 writes it into agent.env: 32 raw bytes, base64."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def sign(release: AgentRelease, key: Ed25519PrivateKey) -> AgentRelease:
    signature = key.sign(release.signed_bytes())
    return release.model_copy(update={"signature": base64.b64encode(signature).decode("ascii")})
