"""``reprofarm``: mounts the agent core's commands (probe, build, run); the
controller's commands join here as they are built."""

from __future__ import annotations

import typer
from reprofarm_agent import cli as agent_cli

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="reprofarm: reproduce a rare, hardware-dependent hang and measure who hits it.",
)
app.command()(agent_cli.probe)
app.command()(agent_cli.build)
app.command()(agent_cli.run)


def main() -> None:
    app(prog_name="reprofarm")
