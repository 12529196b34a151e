"""Rebooting a machine that holds a process nobody can kill.

A thread stuck in the kernel's cancel wait can make hangtest unkillable; the
machine is then useless for runs until it restarts. With ``--reboot-when-needed``
(off by default: a lab admin must allow it) the agent, once the run's evidence is
delivered, writes a marker and runs the reboot command. At its next registration
it reports the reboot (``RebootReport``), the api clears ``needs_reboot`` and the
dashboard shows it. The marker says whether the OS boot time moved, so a command
that does not really reboot (tests use a harmless one) is never passed off as a
reboot that happened.

The marker: ``<work_dir>/reboot.json``.
"""

from __future__ import annotations

import logging
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel
from reprofarm_protocol.jobs import RebootReport

log = logging.getLogger(__name__)

DEFAULT_COMMANDS: dict[str, list[str]] = {
    "windows": ["shutdown.exe", "/r", "/t", "30", "/c", "reprofarm: a hung process survived kill"],
    "linux": ["systemctl", "reboot"],
}
"""The reboot command by the OS the probe reports (``--reboot-command`` overrides it)."""


class RebootMarker(BaseModel):
    requested_at: datetime
    run_id: int | None
    boot_time: float


class RebootRefusedError(Exception):
    """The reboot command failed: the machine keeps its stuck process, and the agent
    keeps not leasing (needs_reboot stays) until someone reboots it."""


def _marker(work_dir: Path) -> Path:
    return work_dir / "reboot.json"


def request_reboot(
    command: list[str], *, work_dir: Path, run_id: int | None, boot_time: float
) -> None:
    """Write the marker, then run the reboot command. Raises RebootRefusedError
    (and removes the marker) when the command fails."""
    marker = _marker(work_dir)
    marker.write_text(
        RebootMarker(
            requested_at=datetime.now(UTC), run_id=run_id, boot_time=boot_time
        ).model_dump_json()
    )
    log.warning("rebooting this machine for run %s: %s", run_id, " ".join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        marker.unlink(missing_ok=True)
        raise RebootRefusedError(f"reboot command {command[0]!r} failed: {exc}") from None
    if done.returncode != 0:
        marker.unlink(missing_ok=True)
        detail = (done.stderr or done.stdout).strip()[-300:]
        raise RebootRefusedError(
            f"reboot command {command[0]!r} exited {done.returncode}: {detail}"
        )


def pending_report(work_dir: Path, *, boot_time: float) -> RebootReport | None:
    """The reboot to report at registration, if the agent asked for one."""
    marker = _marker(work_dir)
    if not marker.exists():
        return None
    asked = RebootMarker.model_validate_json(marker.read_text())
    return RebootReport(
        requested_at=asked.requested_at,
        run_id=asked.run_id,
        boot_time_changed=boot_time > asked.boot_time + 1,
    )


def reported(work_dir: Path) -> None:
    """The api has the report: forget the marker."""
    _marker(work_dir).unlink(missing_ok=True)
