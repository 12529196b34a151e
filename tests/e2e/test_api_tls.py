"""`reprofarm api` over https: a real api process with a certificate made here
(self-signed, for 127.0.0.1), reached by a client that trusts only that
certificate. The install line lab admins type is https (docs/windows.md)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.farm import free_port, wait_for


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reprofarm test controller")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_the_api_serves_https_with_the_configured_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REPROFARM_")},
        "REPROFARM_DATA_DIR": str(tmp_path / "controller"),
        "REPROFARM_TLS_KEY_FILE": str(key),  # the key from the environment, the cert as option
    }
    log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reprofarm_cli",
            "api",
            "--port",
            str(port),
            "--tls-cert",
            str(cert),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        with httpx.Client(verify=str(cert), timeout=5) as trusting:

            def healthy() -> bool:
                try:
                    return trusting.get(f"{url}/health").status_code == 200
                except httpx.TransportError:
                    assert api.poll() is None, (tmp_path / "api.log").read_text()
                    return False

            wait_for("the api over https", healthy, timeout=60, every=0.2)
            script = trusting.get(f"{url}/install.ps1")
            assert script.status_code == 200, script.text
            assert f"$ReprofarmApiUrl = '{url}'" in script.text  # the https URL it came to
        # Plain http on the same port is not served.
        try:
            plain = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        except httpx.TransportError:
            pass
        else:
            assert plain.status_code != 200, "the api answered plain http"
    finally:
        if api.poll() is None:
            os.killpg(api.pid, signal.SIGKILL)
        api.wait()


def test_a_certificate_without_its_key_is_refused_naming_the_setting(tmp_path):
    cert, _ = self_signed(tmp_path)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REPROFARM_")},
        "REPROFARM_DATA_DIR": str(tmp_path / "controller"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "reprofarm_cli", "api", "--port", "1", "--tls-cert", str(cert)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "tls_key_file: " in done.stderr, done.stderr
