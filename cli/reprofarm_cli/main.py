"""``reprofarm``: one command for the whole farm. The agent core's commands
(probe, build, run) are mounted from the agent package; the controller's
(up, api, worker, beat, submit, watch, verify, search, stats, export, analyze, triage,
signatures, token, pools, agents, db) live here."""

from __future__ import annotations

import typer
from reprofarm_agent import cli as agent_cli

from reprofarm_cli import controls, remote, services, studies
from reprofarm_cli.analyze import analyze
from reprofarm_cli.export import export
from reprofarm_cli.triage import signatures_app, triage
from reprofarm_cli.up import up

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="reprofarm: reproduce a rare, hardware-dependent hang and measure who hits it.",
)
app.command()(agent_cli.probe)
app.command()(agent_cli.build)
app.command()(agent_cli.run)
app.command()(up)
app.command()(remote.submit)
app.command()(remote.watch)
app.command()(studies.verify)
app.command()(studies.search)
app.command()(remote.stats)
app.command()(export)
app.command()(remote.explain)
app.command()(analyze)
app.command()(triage)
app.add_typer(remote.token_app, name="token")
app.add_typer(controls.pools_app, name="pools")
app.add_typer(controls.agents_app, name="agents")
app.add_typer(signatures_app, name="signatures")
app.command()(services.api)
app.command()(services.worker)
app.command()(services.beat)
app.command("agent")(agent_cli.serve)
db_app = typer.Typer(no_args_is_help=True, help="database maintenance")
db_app.command("upgrade")(services.db_upgrade)
db_app.command("token")(services.db_token)
db_app.command("reanalyze")(services.db_reanalyze)
db_app.command("rebuild-rollups")(services.db_rebuild_rollups)
app.add_typer(db_app, name="db")


def main() -> None:
    app(prog_name="reprofarm")
