"""The agent's exception tree (drawn in the package docstring)."""


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class PlacementError(AgentError):
    """The asked CPU placement cannot be honoured on this machine."""


class ProbeError(AgentError):
    """The hardware description could not be read."""


class BuildError(AgentError):
    """A Go toolchain could not be installed, or hangtest could not be built."""


class CaptureError(AgentError):
    """A process dump could not be taken."""


class ApiUnavailableError(AgentError):
    """The api could not be reached or answered 5xx: try again later."""


class ApiRefusedError(AgentError):
    """The api answered 4xx: retrying the same request will not help."""


class ForeignOriginError(ApiRefusedError):
    """A URL the api handed over (a build, a wheel) points at another origin than
    the configured controller's: the agent refuses to send its token there."""


class ApiUnauthorizedError(ApiRefusedError):
    """The api answered 401: the token is unknown or revoked."""


class EnrollmentRefusedError(AgentError):
    """Neither the agent's own token nor its enrollment token is accepted: only an
    admin can help (a new enrollment token), so the agent stops and says so."""


class RebootStartedError(AgentError):
    """The agent ran the reboot command: it stops, and reports the reboot when it
    registers again (``reprofarm_agent.reboot``)."""
