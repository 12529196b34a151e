"""The agent's side of the REST protocol. The HTTP client is passed in, so
tests hand it Starlette's TestClient pointed at the real app.

The bearer token goes to the configured controller only: every URL, including
those the api hands over (a build's, a release's wheels), is checked against
the origin (scheme, host, port) of the client's ``base_url`` before the token
is attached (``ForeignOriginError`` otherwise). The protocol already makes
those URLs relative paths; this is the agent's own guard, should a release,
a lease or a proxy say otherwise."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
from reprofarm_protocol.jobs import (
    AgentRegister,
    AgentRegistered,
    BuildRef,
    Heartbeat,
    HeartbeatReply,
    LeasedRun,
    LeaseRequest,
    RunReport,
)
from reprofarm_protocol.release import AgentRelease, ReleaseFile

from reprofarm_agent.artifacts import sha256_file
from reprofarm_agent.errors import (
    ApiRefusedError,
    ApiUnauthorizedError,
    ApiUnavailableError,
    ForeignOriginError,
)

_CHUNK = 1 << 20


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 500:
        raise ApiUnavailableError(f"{response.request.url.path}: HTTP {response.status_code}")
    if response.status_code == 401:
        raise ApiUnauthorizedError(f"{response.request.url.path}: HTTP 401: the token is refused")
    if response.status_code >= 400:
        raise ApiRefusedError(
            f"{response.request.url.path}: HTTP {response.status_code}: {response.text[:500]}"
        )
    return response


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


class ApiClient:
    """``enrollment_token`` only registers; ``token`` is the agent's own, which
    registration hands out. Every call about a run proves its lease
    (``X-Lease-Token``)."""

    def __init__(self, http: httpx.Client, enrollment_token: str = "") -> None:
        self._http = http
        self.enrollment_token = enrollment_token
        self.token = ""

    def _request(
        self,
        method: str,
        path: str,
        *,
        content: str | bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        token: str | None = None,
    ) -> httpx.Response:
        self._check_origin(path)
        bearer = token if token is not None else self.token
        all_headers = {"Authorization": f"Bearer {bearer}", **(headers or {})}
        if isinstance(content, str):
            all_headers.setdefault("Content-Type", "application/json")
        try:
            response = self._http.request(
                method, path, content=content, headers=all_headers, timeout=timeout
            )
        except httpx.TransportError as exc:
            raise ApiUnavailableError(f"{path}: {exc}") from None
        return _check(response)

    def _check_origin(self, url: str) -> None:
        """ForeignOriginError unless ``url`` is a path on the configured controller
        or an absolute URL of its very origin."""
        target = httpx.URL(url)
        if not target.scheme and not target.host:
            return  # a path: httpx joins it to base_url
        controller = self._http.base_url
        if _origin(target) != _origin(controller):
            raise ForeignOriginError(
                f"{url[:200]}: not on the controller {controller.scheme}://"
                f"{controller.netloc.decode('ascii')}; refusing to send the agent's token there"
            )

    def register(self, body: AgentRegister, *, with_token: str) -> int:
        """Register with ``with_token`` (the agent's own or its enrollment token);
        the reply's token becomes the agent's own."""
        response = self._request(
            "POST", "/api/v1/agents/register", content=body.model_dump_json(), token=with_token
        )
        reply = AgentRegistered.model_validate_json(response.content)
        self.token = reply.token
        return reply.agent_id

    def lease(self, wait_s: float) -> LeasedRun | None:
        response = self._request(
            "POST",
            "/api/v1/agents/me/lease",
            content=LeaseRequest(wait_s=wait_s).model_dump_json(),
            timeout=wait_s + 30,
        )
        if response.status_code == 204:
            return None
        return LeasedRun.model_validate_json(response.content)

    def heartbeat(self, run_id: int, lease_token: str, beat: Heartbeat) -> HeartbeatReply:
        response = self._request(
            "POST",
            f"/api/v1/runs/{run_id}/heartbeat",
            content=beat.model_dump_json(),
            headers={"X-Lease-Token": lease_token},
        )
        return HeartbeatReply.model_validate_json(response.content)

    def post_result(self, run_id: int, lease_token: str, report: RunReport) -> None:
        self._request(
            "POST",
            f"/api/v1/runs/{run_id}/result",
            content=report.model_dump_json(),
            headers={"X-Lease-Token": lease_token},
        )

    def fetch_build(self, build: BuildRef, cache_dir: Path) -> Path:
        """The binary, from the cache by sha256 or downloaded and verified."""
        exe = "hangtest.exe" if build.target.startswith("windows/") else "hangtest"
        path = cache_dir / build.sha256 / exe
        if path.exists() and sha256_file(path) == build.sha256:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        self._download(build.url, tmp, sha256=build.sha256, what="build", claimed_by="the lease")
        tmp.chmod(0o755)
        tmp.replace(path)
        return path

    def agent_release(self) -> AgentRelease:
        """The release the controller serves (self-update compares its version)."""
        response = self._request("GET", "/api/v1/agent/release")
        return AgentRelease.model_validate_json(response.content)

    def download_wheel(self, file: ReleaseFile, folder: Path) -> Path:
        """A wheel of the release into ``folder``, verified against the release's
        sha256 and size; a file already there with the right bytes is kept."""
        path = folder / file.filename
        if path.is_file() and sha256_file(path) == file.sha256:
            return path
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        self._download(file.url, tmp, sha256=file.sha256, what="wheel", claimed_by="the release")
        tmp.replace(path)
        return path

    def _download(self, url: str, tmp: Path, *, sha256: str, what: str, claimed_by: str) -> None:
        """Stream ``url`` into ``tmp``; ApiRefusedError, and no file left, when the
        bytes' sha256 is not the one ``claimed_by`` gave."""
        self._check_origin(url)
        digest = hashlib.sha256()
        try:
            with self._http.stream(
                "GET", url, headers={"Authorization": f"Bearer {self.token}"}
            ) as r:
                _check(r)
                with tmp.open("wb") as f:
                    for chunk in r.iter_bytes(_CHUNK):
                        digest.update(chunk)
                        f.write(chunk)
        except httpx.TransportError as exc:
            tmp.unlink(missing_ok=True)
            raise ApiUnavailableError(f"{url}: {exc}") from None
        if digest.hexdigest() != sha256:
            tmp.unlink(missing_ok=True)
            raise ApiRefusedError(
                f"{what} {url} has sha256 {digest.hexdigest()}, {claimed_by} said {sha256}"
            )

    def upload_artifact(
        self, run_id: int, lease_token: str, path: Path, kind: str, name: str
    ) -> None:
        """Upload, resuming from what the api already has."""
        size = path.stat().st_size
        sha = sha256_file(path)
        lease = {"X-Lease-Token": lease_token}
        state = self._request(
            "GET", f"/api/v1/runs/{run_id}/artifacts/{name}", headers=lease
        ).json()
        if state["complete"]:
            return
        start = state["received"] if state["bytes"] == size else 0
        headers = {
            **lease,
            "X-Artifact-Kind": kind,
            "X-Artifact-Sha256": sha,
            "X-Artifact-Size": str(size),
            "Content-Range": f"bytes {start}-{max(size - 1, start)}/{size}",
        }

        def body() -> Iterator[bytes]:
            with path.open("rb") as f:
                f.seek(start)
                while chunk := f.read(_CHUNK):
                    yield chunk

        self._request(
            "PUT",
            f"/api/v1/runs/{run_id}/artifacts/{name}",
            headers=headers,
            content=body(),
            timeout=600,
        )


def gzip_file(path: Path) -> Path:
    """Compress a process dump for upload: Go's cores are mostly zeros."""
    out = path.with_name(path.name + ".gz")
    with path.open("rb") as src, gzip.open(out, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, _CHUNK)
    return out
