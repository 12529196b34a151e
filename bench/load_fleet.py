"""Who the simulated agents of agents_load.py are, by index: the name, the
hardware and the registration body of agent ``i``, and the settings every agent
shares (FleetSpec).

An agent is defined by its index alone, so any process can build any agent:
the generator processes (load_generators.py) each build their own share and
never collide on a name or a machine secret.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load_agent import Load, SimAgent
from load_farm import POOL
from load_metrics import Recorder
from reprofarm_protocol.hardware import HardwareInfo
from reprofarm_protocol.jobs import AgentRegister

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.factories import hardware, machine_secret

_MODELS = {
    "arm64": [
        "Snapdragon X Elite X1E-78-100",
        "Snapdragon X Plus X1P-42-100",
        "Snapdragon 8cx Gen 3",
        "Microsoft SQ3",
        "Ampere Altra Q80-30",
        "Apple M2 (virtual)",
        "Azure Cobalt 100",
    ],
    "amd64": [
        "Intel Core i7-13700",
        "Intel Xeon Gold 6338",
        "AMD Ryzen 9 7950X",
        "AMD EPYC 7763",
        "Intel Core Ultra 7 155H",
        "Intel Xeon E5-2690 v4",
        "AMD Ryzen 7 5800U",
    ],
}
_CPUS = [2, 4, 6, 8, 12, 16, 24, 32]
_HYPERVISORS = ["none", "hyperv", "vmware"]


def agent_name(i: int) -> str:
    return f"load-{i:05d}"


def hardware_for(config: int) -> HardwareInfo:
    """One of 336 distinct configurations (arch x hypervisor x CPUs x model)."""
    arch = ("amd64", "arm64")[config % 2]
    return hardware(
        arch=arch,
        hypervisor=_HYPERVISORS[(config // 2) % 3],
        cpus=_CPUS[(config // 6) % 8],
        model=_MODELS[arch][(config // 48) % 7],
    )


def register_body(i: int, configs: int) -> dict[str, Any]:
    name = agent_name(i)
    return AgentRegister(
        name=name,
        pools=[POOL],
        hardware=hardware_for(i % configs),
        agent_version="load",
        machine_secret=machine_secret(name),
    ).model_dump(mode="json")


@dataclass(frozen=True)
class FleetSpec:
    """Everything needed to build agent ``i`` and the Load it reports into; it
    is pickled to each generator process, so it holds only plain values."""

    agents: int
    api_urls: list[str]
    enrollment: str
    hardware_configs: int
    ramp_s: float
    wait_s: float
    heartbeat_s: float
    run_s: tuple[float, float]
    hang_fraction: float
    artifact: bytes
    ingest: bool
    ingest_batch: int

    def new_load(self) -> Load:
        return Load(
            rec=Recorder(),
            wait_s=self.wait_s,
            heartbeat_s=self.heartbeat_s,
            lease_s=4 * self.heartbeat_s,
            run_s=self.run_s,
            hang_fraction=self.hang_fraction,
            artifact=self.artifact,
            artifact_sha256=hashlib.sha256(self.artifact).hexdigest(),
            ingest=self.ingest,
            ingest_batch=self.ingest_batch,
        )

    def agent(self, i: int, load: Load) -> SimAgent:
        """Agent ``i``: its own name and hardware, on api process i mod N."""
        return SimAgent(
            name=agent_name(i),
            url=self.api_urls[i % len(self.api_urls)],
            enrollment=self.enrollment,
            register_body=register_body(i, self.hardware_configs),
            load=load,
        )

    def start_after(self, i: int) -> float:
        """When agent ``i`` starts, in seconds after the load does: the
        registrations spread evenly over the ramp."""
        return self.ramp_s * i / self.agents
