"""The reprofarm lab agent core: run hangtest on an exact CPU set, notice the
moment it hangs, keep the evidence, and report a precise result.

Exceptions (all carry a message meant for the person at the terminal)::

    AgentError
    ├── PlacementError    the asked CPU placement is impossible on this machine
    ├── ProbeError        the hardware could not be read
    ├── BuildError        a toolchain could not be installed or hangtest not built
    ├── CaptureError      a process dump could not be taken
    ├── ApiUnavailableError  the controller is unreachable or failing (5xx): retry
    └── ApiRefusedError   the controller refused a request (4xx)
"""

from reprofarm_agent.errors import AgentError, BuildError, CaptureError, PlacementError, ProbeError

__all__ = ["AgentError", "BuildError", "CaptureError", "PlacementError", "ProbeError"]
