"""The wire contract shared by every part of reprofarm.

Pydantic models for what crosses a process or network boundary (hangtest's
JSON-lines events, run results, hardware descriptions, build manifests) plus
the few definitions every side must compute identically (the hit-rate
interval), so that the agent's summary and the controller's dashboard agree.

Exceptions::

    ProtocolError (ValueError)      a line or document does not follow the contract
"""

from reprofarm_protocol.errors import ProtocolError

__all__ = ["ProtocolError"]
