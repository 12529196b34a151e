"""Agents update themselves from the controller, end to end: real wheels built
from this repository (and from copies of it with another version), served by a
real api process, installed into real virtual environments of a managed
install, run by the real supervisor.

Releases: A is this repository, built by the api's builder; B, C and D are A's
other wheels with an agent wheel built from a copy of agent-windows/: B is
version 0.2.0; C is 0.3.0 whose ``serve`` crashes at once (its start check
passes: --version and probe work); D is 0.4.0 whose entry point raises on
import (its start check fails).
"""

from __future__ import annotations

import http.server
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from reprofarm_agent.client import ApiClient
from reprofarm_agent.errors import ApiRefusedError, ForeignOriginError
from reprofarm_agent.install_layout import InstallLayout
from reprofarm_agent.release_signature import ReleaseSignatureError, verify
from reprofarm_agent.self_update import SelfUpdater, install
from reprofarm_api.app import create_app
from reprofarm_api.install import signing, wheels
from reprofarm_db import tokens
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.jobs import BuildRef
from reprofarm_protocol.release import ReleaseFile

from tests.e2e.farm import free_port, wait_for

WORKSPACE = Path(__file__).resolve().parents[2]
UV = shutil.which("uv")
pytestmark = pytest.mark.needs("uv")


def start_variants(root: Path, specs: dict[str, str | None]) -> dict[str, subprocess.Popen[bytes]]:
    """For each version, start building into ``root/<version>`` an agent wheel of
    that version from a copy of agent-windows/, whose module named in ``specs``
    (if any) raises as soon as it is imported."""
    builds = {}
    for version, breaks in specs.items():
        source = root / f"src-{version}"
        shutil.copytree(
            WORKSPACE / "agent-windows",
            source,
            ignore=shutil.ignore_patterns("__pycache__", "tests", "wine", ".*"),
        )
        pyproject = source / "pyproject.toml"
        text, n = re.subn(
            r'^version = "[^"]+"$', f'version = "{version}"', pyproject.read_text(), flags=re.M
        )
        assert n == 1, pyproject
        pyproject.write_text(text)
        if breaks is not None:
            with (source / "reprofarm_agent" / breaks).open("a") as f:
                f.write(f'\nraise RuntimeError("release {version} is broken on purpose")\n')
        assert UV is not None
        builds[version] = subprocess.Popen(
            [UV, "build", "--wheel", "--quiet", "--out-dir", str(root / version), str(source)]
        )
    return builds


def finish_variants(root: Path, builds: dict[str, subprocess.Popen[bytes]], base: Path) -> None:
    """Each variant's release: its agent wheel, ``base``'s other wheels and pins."""
    for version, build in builds.items():
        assert build.wait(300) == 0, f"building {version}"
        for wheel in base.glob("*.whl"):
            if not wheel.name.startswith("reprofarm_agent-"):
                shutil.copy(wheel, root / version)
        shutil.copy(base / wheels.REQUIREMENTS, root / version)


@dataclass
class Releases:
    a: Path
    b: Path
    c: Path
    d: Path


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> Releases:
    root = tmp_path_factory.mktemp("releases")
    # `serve` imports the service module; --version and probe do not.
    builds = start_variants(root, {"0.2.0": None, "0.3.0": "service.py", "0.4.0": "cli.py"})
    a = wheels.build(WORKSPACE, root / "built")  # meanwhile
    finish_variants(root, builds, a)
    return Releases(a=a, b=root / "0.2.0", c=root / "0.3.0", d=root / "0.4.0")


@dataclass
class Controller:
    url: str
    admin: str
    enrollment: str
    served: Path  # a symlink to the folder of the release the api serves

    def serve(self, folder: Path) -> None:
        """Switch the served release atomically (the api reads the folder per request)."""
        link = self.served.with_name("served.new")
        link.unlink(missing_ok=True)
        link.symlink_to(folder)
        link.replace(self.served)

    def agents(self) -> list[dict[str, Any]]:
        r = httpx.get(
            f"{self.url}/api/v1/agents", headers={"Authorization": f"Bearer {self.admin}"}
        )
        r.raise_for_status()
        agents: list[dict[str, Any]] = r.json()
        return agents


@pytest.fixture
def controller(tmp_path, releases) -> Iterator[Controller]:
    db = f"sqlite:///{tmp_path / 'reprofarm.sqlite'}"
    upgrade(db)
    engine = make_engine(db)
    with transaction(make_sessionmaker(engine)) as s:
        admin = tokens.create(s, name="admin", role="admin")
        enrollment = tokens.create(s, name="lab", role="agent")
    engine.dispose()
    served = tmp_path / "served"
    served.symlink_to(releases.b)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REPROFARM_")},
        "REPROFARM_DATA_DIR": str(tmp_path / "controller"),
        "REPROFARM_DATABASE_URL": db,
        "REPROFARM_AGENT_WHEELS_DIR": str(served),
    }
    log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen(
        [sys.executable, "-m", "reprofarm_cli", "api", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for("the api", lambda: _healthy(url), timeout=60, every=0.2)
    yield Controller(url, admin, enrollment, served)
    _stop(api, grace_s=0)  # a graceful stop would wait for the agent's last long-poll
    print("===== api.log\n" + (tmp_path / "api.log").read_text(errors="replace")[-2000:])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _stop(process: subprocess.Popen[bytes], grace_s: float = 20) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM if grace_s else signal.SIGKILL)
        process.wait(grace_s or None)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def served_release_key(url: str) -> str:
    """The release key the controller writes into install.ps1 (and so agent.env)."""
    script = httpx.get(f"{url}/install.ps1").text
    (key,) = re.findall(r"^\$ReprofarmReleaseKey = '([A-Za-z0-9+/=]+)'$", script, re.M)
    return key


def managed_install(root: Path, release: Path, controller: Controller) -> InstallLayout:
    """What install.ps1 leaves behind, made with the same Python the updater uses."""
    layout = InstallLayout(root)
    made = wheels.read_release(release)
    version = made.version
    paths = [release / f.filename for f in made.files]
    assert UV is not None
    install(layout, made, paths, uv=UV)
    layout.write_pointer("current", version)
    layout.write_pointer("known-good", version)
    layout.config.write_text(
        "\n".join(
            [
                "# as install.ps1 writes it",
                f"REPROFARM_API={controller.url}",
                f"REPROFARM_TOKEN={controller.enrollment}",
                f"REPROFARM_RELEASE_PUBLIC_KEY={served_release_key(controller.url)}",
                "REPROFARM_AGENT_NAME=lab-e2e",
                'REPROFARM_POOLS=["e2e"]',
                f"REPROFARM_WORK_DIR={root / 'work'}",
                f"REPROFARM_CACHE_DIR={root / 'cache'}",
                "REPROFARM_UPDATE_CHECK_S=1",
            ]
        )
        + "\n"
    )
    return layout


def registrations(layout: InstallLayout) -> int:
    log = layout.logs / "agent.log"
    return log.read_text(errors="replace").count("registered as agent") if log.exists() else 0


def test_an_agent_updates_itself_and_rolls_back_a_release_that_crashes(
    tmp_path, releases, controller
):
    a, b, c = (wheels.read_release(r).version for r in (releases.a, releases.b, releases.c))
    layout = managed_install(tmp_path / "install", releases.a, controller)
    supervisor = subprocess.Popen(
        [str(layout.agent_exe(a)), "supervise", "--root", str(layout.root), "--confirm-after", "3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("REPROFARM_")},
        start_new_session=True,
    )
    try:
        # A registers, sees B, installs it beside itself, switches; B registers.
        def agent_version() -> str | None:
            found = [x for x in controller.agents() if x["name"] == "lab-e2e"]
            return found[0]["agent_version"] if found else None

        wait_for(f"the agent to run {b}", lambda: agent_version() == b, timeout=120)
        wait_for(f"{b} to be confirmed", lambda: layout.read_pointer("known-good") == b, 30)
        assert layout.read_pointer("current") == b
        assert layout.is_ready(b)
        assert registrations(layout) == 2  # A, then B

        # C's serve crashes at once: rolled back to B, refused, never installed again.
        controller.serve(releases.c)
        wait_for(f"{c} to be refused", lambda: c in layout.load_state().refused, timeout=120)
        assert "exited with code 1" in layout.load_state().refused[c]
        wait_for(f"{b} to register again", lambda: registrations(layout) == 3, timeout=60)
        agent_log = (layout.logs / "agent.log").read_text(errors="replace")
        assert f"release {c} is broken on purpose" in agent_log
        assert layout.read_pointer("current") == b
        assert layout.read_pointer("known-good") == b
        assert agent_version() == b
        time.sleep(2)  # B checks again after registering: C stays refused
        assert layout.read_pointer("current") == b
        assert supervisor.poll() is None, "the supervisor stopped"
    finally:
        _stop(supervisor)
        for name in ("supervisor.log", "agent.log"):
            path = layout.logs / name
            if path.exists():
                print(f"===== {name}\n" + path.read_text(errors="replace")[-4000:])


def updater_client(controller_settings: ControllerSettings, token: str) -> ApiClient:
    client = ApiClient(TestClient(create_app(controller_settings, relay=False)))
    client.token = token  # an enrollment token may read the release and its wheels
    return client


def release_key(tmp_path: Path) -> str:
    """The public key of the in-process controller's release key (its data dir)."""
    settings = ControllerSettings(data_dir=tmp_path / "controller")
    return signing.public_key_text(signing.load_or_create(settings))


@pytest.fixture
def in_process(tmp_path) -> Callable[[Path], ApiClient]:
    db = f"sqlite:///{tmp_path / 'reprofarm.sqlite'}"
    upgrade(db)
    engine = make_engine(db)
    with transaction(make_sessionmaker(engine)) as s:
        enrollment = tokens.create(s, name="lab", role="agent")
    engine.dispose()

    def serving(folder: Path) -> ApiClient:
        settings = ControllerSettings(
            data_dir=tmp_path / "controller", database_url=db, agent_wheels_dir=folder
        )
        return updater_client(settings, enrollment)

    return serving


def test_a_release_that_fails_its_start_check_is_refused_and_nothing_switches(
    tmp_path, releases, in_process
):
    a = wheels.read_release(releases.a).version
    d = wheels.read_release(releases.d).version
    layout = InstallLayout(tmp_path / "install")
    layout.write_pointer("current", a)
    updater = SelfUpdater(layout, running_version=a, public_key=release_key(tmp_path))
    assert updater.update(in_process(releases.d)) is None
    refused = layout.load_state().refused
    assert "start check failed" in refused[d]
    assert f"release {d} is broken on purpose" in refused[d]
    assert layout.read_pointer("current") == a
    assert not layout.venv(d).exists()  # the broken environment is removed
    assert layout.load_state().trial is None
    assert updater.update(in_process(releases.d)) is None  # refused: not installed again
    assert not layout.venv(d).exists()


def test_a_wheel_whose_bytes_differ_from_the_release_is_refused(tmp_path, releases, in_process):
    client = in_process(releases.a)
    real = client.agent_release().files[-1]
    forged = ReleaseFile(filename=real.filename, sha256="0" * 64, bytes=real.bytes, url=real.url)
    with pytest.raises(ApiRefusedError, match="sha256"):
        client.download_wheel(forged, tmp_path / "downloads")
    assert list((tmp_path / "downloads").iterdir()) == []
    assert client.download_wheel(real, tmp_path / "downloads").name == real.filename


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Another origin: records every request's Authorization header."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[tuple[str, list[str | None]]]:
    """A real HTTP server on another origin, and what it was sent."""
    seen: ClassVar[list[str | None]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_the_agent_sends_its_token_to_the_controller_only(
    tmp_path, releases, in_process, elsewhere
):
    origin, seen = elsewhere
    client = in_process(releases.a)
    real = client.agent_release().files[-1]
    # What a forged release (or lease) would say, past the protocol's own check.
    for url in (f"{origin}{real.url}", f"//127.0.0.1:{origin.rsplit(':', 1)[1]}{real.url}"):
        forged = ReleaseFile.model_construct(**{**real.model_dump(), "url": url})
        with pytest.raises(ForeignOriginError, match="refusing to send the agent's token"):
            client.download_wheel(forged, tmp_path / "downloads")
        build = BuildRef(
            sha256="0" * 64, target="linux/amd64", go_version="1.27", bytes=1, fix_present=False,
            url=url,
        )  # fmt: skip
        with pytest.raises(ForeignOriginError):
            client.fetch_build(build, tmp_path / "builds")
    assert seen == [], "a request reached the other origin"
    # The controller's own origin, absolute or as a path, is fine.
    same = ReleaseFile.model_construct(
        **{**real.model_dump(), "url": f"http://testserver{real.url}"}
    )
    assert client.download_wheel(same, tmp_path / "same").name == real.filename


def test_a_release_is_installed_only_if_signed_by_the_install_time_key(
    tmp_path, releases, in_process, caplog
):
    client = in_process(releases.b)
    key = release_key(tmp_path)
    served = client.agent_release()
    verify(served, key)  # the controller signed what it serves
    for what, changed in {
        "a wheel's sha256": {
            "files": [*served.files[:-1], served.files[-1].model_copy(update={"sha256": "1" * 64})]
        },
        "the version": {"version": "9.9.9"},
        "the pins": {"requirements": served.requirements + "evil==1.0 --hash=sha256:" + "2" * 64},
    }.items():
        with pytest.raises(ReleaseSignatureError, match="does not match") as refused:
            verify(served.model_copy(update=changed), key)
        assert refused.value is not None, what
    with pytest.raises(ReleaseSignatureError, match="is not signed"):
        verify(served.model_copy(update={"signature": None}), key)
    with pytest.raises(ReleaseSignatureError, match="no REPROFARM_RELEASE_PUBLIC_KEY"):
        verify(served, "")

    # Through the updater: another controller's key (or none) refuses the release with
    # its reason in the log, and nothing is downloaded, installed or recorded.
    a = wheels.read_release(releases.a).version
    other = signing.public_key_text(Ed25519PrivateKey.generate())
    layout = InstallLayout(tmp_path / "install")
    layout.write_pointer("current", a)
    for public_key, reason in ((other, "does not match"), ("", "no REPROFARM_RELEASE_PUBLIC_KEY")):
        caplog.clear()
        updater = SelfUpdater(layout, running_version=a, public_key=public_key)
        with caplog.at_level(logging.ERROR, logger="reprofarm_agent.self_update"):
            assert updater.update(client) is None
        assert "refusing the controller's release" in caplog.text, caplog.text
        assert reason in caplog.text, caplog.text
        assert "nothing installed" in caplog.text, caplog.text
        assert sorted(p.name for p in layout.root.iterdir()) == ["current"]
