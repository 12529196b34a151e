"""The exit codes of ``reprofarm-agent serve`` and ``supervise``: the contract
between the agent, its supervisor and run-agent.ps1 (which writes code 3 to the
event log). They live apart from ``cli`` so that the supervisor, which the CLI
starts, can read them without importing the CLI back (an import cycle)."""

from __future__ import annotations

EXIT_USAGE = 2
"""A command's input or environment is wrong; the message on stderr says which."""
EXIT_NOTHING_INSTALLED = EXIT_USAGE
"""``supervise``: the install holds no ready version to start (run install.ps1)."""
EXIT_CREDENTIALS_REFUSED = 3
"""``serve``: the api refuses every token this agent has (a supervisor must report it)."""
EXIT_REBOOTING = 4
"""``serve``: the agent asked the machine to reboot (--reboot-when-needed)."""
EXIT_UPDATED = 75
"""``serve``: a managed agent installed a new version and made it current; its
supervisor starts it (75 is sysexits' EX_TEMPFAIL: "try again")."""
