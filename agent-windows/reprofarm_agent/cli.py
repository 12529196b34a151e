"""Command line of the agent core: ``probe``, ``build`` and ``run``.

``reprofarm-agent`` (and ``python -m reprofarm_agent``) exposes them on a lab
machine; the ``reprofarm`` command mounts the same functions. Errors are
turned into one ``error: <field>: <reason>`` line and exit code 2, here and
nowhere else.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from reprofarm_protocol.affinity import SCENARIOS
from rich.console import Console

from reprofarm_agent.build import TARGETS, build_hangtest, native_target
from reprofarm_agent.display import make_display
from reprofarm_agent.durations import parse_duration
from reprofarm_agent.errors import AgentError, EnrollmentRefusedError, RebootStartedError
from reprofarm_agent.exit_codes import (
    EXIT_CREDENTIALS_REFUSED,
    EXIT_REBOOTING,
    EXIT_UPDATED,
    EXIT_USAGE,
)
from reprofarm_agent.hardware import describe
from reprofarm_agent.local_runs import LocalPlan, run_local
from reprofarm_agent.placement import place, validate_policy
from reprofarm_agent.platform import current_platform
from reprofarm_agent.runner import RunSpec
from reprofarm_agent.settings import AgentSettings
from reprofarm_agent.toolchains import resolve_toolchain

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="reprofarm agent: run the hangtest reproducer on exact CPU sets and catch hangs.",
)
_stderr = Console(stderr=True, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(version("reprofarm-agent"))
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="print the agent's version and exit (the self-update start check)",
        ),
    ] = False,
) -> None:
    pass


def _fail(message: str) -> NoReturn:
    _stderr.print(f"error: {message}", highlight=False, markup=False)
    raise typer.Exit(EXIT_USAGE)


def _settings(cache_dir: Path | None) -> AgentSettings:
    settings = AgentSettings()
    if cache_dir is not None:
        settings = settings.model_copy(update={"cache_dir": cache_dir})
    return settings


CacheDir = Annotated[
    Path | None,
    typer.Option(help="toolchains and builds [env REPROFARM_CACHE_DIR, ~/.cache/reprofarm]"),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON on stdout only")]


@app.command()
def probe(as_json: JsonFlag = False) -> None:
    """Describe this machine's hardware, with its configuration fingerprint."""
    try:
        info = describe(current_platform(AgentSettings()).probe())
    except AgentError as exc:
        _fail(str(exc))
    if as_json:
        print(info.model_dump_json(indent=2))
        return
    classes = ",".join(str(c) for c in info.efficiency_classes)
    print(f"{info.os_name} ({info.os} {info.os_version}), {info.arch}, python {info.python_arch}")
    print(f"{info.cpu_model}: {info.logical_cpus} logical CPUs, {info.physical_cores} cores,")
    print(
        f"  {info.packages} packages, {info.numa_nodes} NUMA nodes, "
        f"{info.processor_groups} groups, efficiency classes {classes}"
    )
    print(f"hypervisor {info.hypervisor}, memory {info.memory_bytes / 2**30:.1f} GiB")
    print(f"fingerprint {info.fingerprint}")


@app.command()
def build(
    go: Annotated[
        list[str] | None,
        typer.Option(help="Go version (1.27.3, 1.26) or GOROOT directory; repeatable"),
    ] = None,
    target: Annotated[
        list[str] | None, typer.Option(help=f"GOOS/GOARCH, repeatable: {', '.join(TARGETS)}")
    ] = None,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Build hangtest reproducibly into the content-addressed cache.

    With --json, one build prints its manifest object; several print a list.
    """
    settings = _settings(cache_dir)
    manifests = []
    try:
        for spec in go or [None]:  # type: ignore[list-item]
            toolchain = resolve_toolchain(spec, settings.cache_dir)
            for t in target or [native_target(*_native())]:
                m = build_hangtest(toolchain, t, settings.cache_dir)
                manifests.append(m)
                if not as_json:
                    fix = "has" if m.fix_present else "lacks"
                    print(f"{m.go_version} {m.target}: {m.path}")
                    print(f"  sha256 {m.sha256}, {m.bytes} bytes, toolchain {fix} the pipe fix")
    except AgentError as exc:
        _fail(str(exc))
    if as_json:
        docs = [m.model_dump(mode="json") for m in manifests]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))


def _native() -> tuple[str, str]:
    facts = current_platform(AgentSettings()).probe()
    return facts.os, facts.arch


def _duration(text: str | None, field: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text, field=field)
    except ValueError as exc:
        _fail(str(exc))


@app.command()
def run(
    scenario: Annotated[str, typer.Option(help=f"one of {', '.join(SCENARIOS)}")] = (
        "pipe-close-race"
    ),
    go: Annotated[
        str | None, typer.Option(help="build hangtest with this Go version or GOROOT")
    ] = None,
    binary: Annotated[
        Path | None, typer.Option(help="run this hangtest build instead of building")
    ] = None,
    cpus: Annotated[
        int | None, typer.Option(help="how many CPUs (default: all the policy allows)")
    ] = None,
    affinity: Annotated[
        str, typer.Option(help="compact, spread, pcores, ecores, all or mask:0x..")
    ] = "compact",
    gomaxprocs: Annotated[int | None, typer.Option(help="default: the CPU set's size")] = None,
    workers: Annotated[int, typer.Option(min=1)] = 10,
    iterations: Annotated[
        int | None,
        typer.Option(min=0, help="per worker; default 100000, or no limit with --duration"),
    ] = None,
    duration: Annotated[str | None, typer.Option(help="Go duration per run, e.g. 20s")] = None,
    stall_timeout: Annotated[str, typer.Option(help="a worker stuck this long is a hang")] = "30s",
    progress_interval: Annotated[str, typer.Option(help="hangtest's progress period")] = "1s",
    control_chance: Annotated[
        float | None, typer.Option(help="control-deadlock: chance per iteration of lock inversion")
    ] = None,
    repeat: Annotated[int, typer.Option(min=1, help="how many runs")] = 1,
    out: Annotated[Path | None, typer.Option(help="output folder")] = None,
    cache_dir: CacheDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Run hangtest on this machine, N times, and summarize the hit rate."""
    if scenario not in SCENARIOS:
        _fail(f"scenario: {scenario!r} is not one of {', '.join(SCENARIOS)}")
    if binary is not None and go is not None:
        _fail("binary: give --binary or --go, not both")
    duration_s = _duration(duration, "duration")
    stall_s = _duration(stall_timeout, "stall-timeout") or 0.0
    interval_s = _duration(progress_interval, "progress-interval") or 0.0
    if stall_s <= 0:
        _fail("stall-timeout: must be positive")
    if interval_s <= 0:
        _fail("progress-interval: must be positive")
    if control_chance is not None and not 0 <= control_chance <= 1:
        _fail(f"control-chance: must be between 0 and 1, got {control_chance}")
    if iterations is None:
        iterations = 0 if duration_s else 100_000
    if iterations == 0 and not duration_s:
        _fail("iterations: 0 means no limit and needs --duration")
    settings = _settings(cache_dir)
    try:
        validate_policy(affinity)
        platform = current_platform(settings)
        facts = platform.probe()
        placement = place(facts.cpus, cpus, affinity)
        if binary is None:
            toolchain = resolve_toolchain(go, settings.cache_dir)
            manifest = build_hangtest(
                toolchain, native_target(facts.os, facts.arch), settings.cache_dir
            )
            binary = Path(manifest.path)
            _stderr.print(
                f"hangtest {manifest.sha256[:12]} built with {manifest.go_version}", highlight=False
            )
        elif not binary.is_file():
            _fail(f"binary: {binary} is not a file")
    except AgentError as exc:
        _fail(str(exc))
    if gomaxprocs is not None and gomaxprocs < 1:
        _fail(f"gomaxprocs: must be at least 1, got {gomaxprocs}")
    extra = ("-control-chance", str(control_chance)) if control_chance is not None else ()
    spec = RunSpec(
        binary=binary.resolve(),
        scenario=scenario,
        placement=placement,
        gomaxprocs=gomaxprocs or len(placement.cpus),
        workers=workers,
        iterations=iterations,
        duration_s=duration_s,
        stall_timeout_s=stall_s,
        progress_interval_s=interval_s,
        extra_args=extra,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = (out or Path("reprofarm-runs") / stamp).resolve()
    display = make_display(_stderr)
    try:
        report = run_local(LocalPlan(spec, repeat, out_dir), platform, settings, display)
    finally:
        display.close()
    s = report.summary
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        rate = "n/a" if s.hit_rate is None else f"{s.hit_rate:.1%}"
        ci = "" if s.ci95_low is None else f" (95% CI {s.ci95_low:.1%} to {s.ci95_high:.1%})"
        print(
            f"{s.runs} runs: {s.hangs} hung, {s.passed} passed, {s.failed} failed, "
            f"{s.errors} errors; hit rate {rate}{ci}; {s.iterations} iterations"
        )
        print(f"results in {out_dir}")


@app.command()
def serve(
    api_url: Annotated[
        str | None, typer.Option("--api", help="the api's URL [REPROFARM_API]")
    ] = None,
    token: Annotated[str | None, typer.Option(help="enrollment token [REPROFARM_TOKEN]")] = None,
    name: Annotated[str | None, typer.Option(help="agent name [host name]")] = None,
    pool: Annotated[list[str] | None, typer.Option(help="pool served; repeatable")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="spool and run folders")] = None,
    reboot_when_needed: Annotated[
        bool,
        typer.Option(
            help="reboot this machine when a run's process cannot be killed "
            "[REPROFARM_REBOOT_WHEN_NEEDED]"
        ),
    ] = False,
    reboot_command: Annotated[
        str | None,
        typer.Option(help="the reboot command, split on spaces [shutdown /r or systemctl reboot]"),
    ] = None,
) -> None:
    """Serve as a lab agent: lease runs from the api, run them, report."""
    import logging
    import socket

    import httpx

    from reprofarm_agent.client import ApiClient
    from reprofarm_agent.self_update import UpdateInstalled, managed_updater
    from reprofarm_agent.service import AgentService

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per long-poll is noise
    settings = AgentSettings()
    if work_dir is not None:
        settings = settings.model_copy(update={"work_dir": work_dir})
    if reboot_when_needed:
        settings = settings.model_copy(update={"reboot_when_needed": True})
    if reboot_command:
        settings = settings.model_copy(update={"reboot_command": reboot_command.split()})
    url = api_url or settings.api
    secret = token or settings.token
    if not url or not secret:
        _fail("api: give --api and --token (or REPROFARM_API and REPROFARM_TOKEN)")
    with httpx.Client(base_url=url, timeout=60) as http:
        service = AgentService(
            client=ApiClient(http, secret),
            platform=current_platform(settings),
            settings=settings,
            name=name or settings.agent_name or socket.gethostname(),
            pools=pool or settings.pools,
            updater=managed_updater(settings),
        )
        try:
            service.serve()
        except EnrollmentRefusedError as exc:
            _stderr.print(f"error: {exc}", highlight=False, markup=False)
            raise typer.Exit(EXIT_CREDENTIALS_REFUSED) from None
        except RebootStartedError as exc:
            _stderr.print(f"{exc}: stopping until the machine is back", highlight=False)
            raise typer.Exit(EXIT_REBOOTING) from None
        except UpdateInstalled as exc:
            _stderr.print(f"{exc}: exiting for the supervisor to start it", highlight=False)
            raise typer.Exit(EXIT_UPDATED) from None


@app.command()
def supervise(
    root: Annotated[Path, typer.Option(help="the managed install's folder")],
    confirm_after: Annotated[
        float, typer.Option(min=0, help="seconds a new version must stay up to be kept")
    ] = 60.0,
) -> None:
    """Run a managed install's agent: restart, update, roll back.

    Restarts the agent when it fails, starts the new version after a
    self-update and rolls back one that does not stay up. install.ps1's
    scheduled task runs this; it exits 3 when the api refuses the agent's tokens.
    """
    import logging
    import logging.handlers
    import signal

    from reprofarm_agent.install_layout import InstallLayout
    from reprofarm_agent.supervise import Supervisor

    layout = InstallLayout(root.resolve())
    layout.logs.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s supervisor %(levelname)s %(message)s",
        handlers=[
            logging.StreamHandler(),
            logging.handlers.RotatingFileHandler(
                layout.logs / "supervisor.log", maxBytes=4 << 20, backupCount=2
            ),
        ],
    )
    supervisor = Supervisor(layout, confirm_after_s=confirm_after)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: supervisor.stop())
    raise typer.Exit(supervisor.run())


def main() -> None:
    app(prog_name="reprofarm-agent")


if __name__ == "__main__":
    main()
