"""The `cutover` command. The only place that prints or exits.

Our own errors become one line each and exit code 1; anything unexpected is one
line plus a traceback in a debug log whose path is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from cutover import console
from cutover.errors import CutoverError, RunbookError

EXIT = {"completed": 0, "halted": 2, "rolled-back": 3, "rollback-failed": 4}
DEFAULT_PROFILE = Path("config/sandbox.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 1
    try:
        return args.handler(args)
    except RunbookError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return 1
    except CutoverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume from the ledger", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line here, the traceback in the debug log
        log = _home() / "debug.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as fh:
            fh.write(traceback.format_exc())
        print(f"internal error: {type(exc).__name__}: {exc} (traceback in {log})", file=sys.stderr)
        return 70


def _home() -> Path:
    from cutover.execution import cutover_home

    return cutover_home()


# -- validate / plan / steps --------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from cutover.load import load_profile, load_with_rollbacks
    from cutover.steps import load_step_types

    registry = load_step_types()
    profile = load_profile(args.env) if args.env else None
    problems = []
    for path in args.files:
        try:
            load_with_rollbacks(Path(path), profile, registry)
            print(f"{path}: ok")
        except RunbookError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RunbookError(sorted(set(problems)))  # a rollback runbook may be named twice
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from cutover.execution import load_inputs
    from cutover.plan import build_plan
    from cutover.views import plan_json, plan_table

    loaded = load_inputs(Path(args.file), args.env)
    plan = build_plan(loaded.runbook)
    if args.json:
        print(json.dumps(plan_json(plan), indent=2, ensure_ascii=False))
    else:
        print(plan_table(plan))
    return 0


def cmd_steps(args: argparse.Namespace) -> int:
    from cutover.stepdocs import step_reference
    from cutover.steps import load_step_types

    registry = load_step_types()
    if args.markdown:
        print(step_reference(registry), end="")
        return 0
    for step_type in registry.all():
        summary = step_type.doc.splitlines()[0] if step_type.doc else ""
        print(f"{step_type.kind:6} {step_type.name}: {summary}")
        for name, field in step_type.params.model_fields.items():
            required = "required" if field.is_required() else "optional"
            print(f"         {field.alias or name} ({required}): {field.description or ''}")
    return 0


# -- run / rehearse ------------------------------------------------------------------


def cmd_execute(args: argparse.Namespace) -> int:
    from cutover.execution import ledger_url_for, load_inputs, start_or_resume
    from cutover.ledger import Ledger

    mode = "rehearse" if args.command == "rehearse" else "run"
    loaded = load_inputs(Path(args.file), args.env)
    ledger_url = ledger_url_for(loaded, args.ledger)
    ledger = Ledger(ledger_url)
    options = {"poll_interval": args.poll_interval}
    if mode == "rehearse":
        options |= {"auto_approve": args.auto_approve, "pace": args.pace}
    execution, resumed = start_or_resume(
        ledger, loaded, mode=mode, options=options, new=args.new, execution_id=args.execution_id
    )
    verb = "resuming" if resumed else "starting"
    runbook, profile = loaded.runbook.name, loaded.profile.name
    print(f"{verb} execution {execution.id} ({mode}) of {runbook} on {profile}")
    _use_prefect_api()
    if not args.verbose:
        # Our own one line per step replaces Prefect's console log; the UI keeps it all.
        # (A failed step is a Failed task run, which Prefect logs as an error with an
        # empty traceback; our FAILED line says it better.)
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    _run_flow(
        ledger_url,
        execution.id,
        rehearsal=mode == "rehearse",
        watch=lambda stop: console.watch(ledger, execution.id, stop),
    )
    status = ledger.execution(execution.id).status  # the ledger, not Prefect, says how it ended
    console.print_outcome(ledger, execution.id, status)
    return EXIT.get(status, 1)


def _run_flow(
    ledger_url: str, execution_id: str, *, rehearsal: bool, watch: Callable[[threading.Event], None]
) -> None:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.cutover import cutover

    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,), daemon=True)
    watcher.start()
    try:
        # Heartbeats cost ~1 s at every sync subflow exit (PREFECT.md §0.6); a rehearsal
        # is watched live, so it goes without. A real run keeps them for zombie detection.
        settings = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None} if rehearsal else {}
        with temporary_settings(settings):
            state = cutover(ledger_url=ledger_url, execution_id=execution_id, return_state=True)
        if state.is_crashed() or (state.is_failed() and state.name == "Failed"):
            state.result()  # our own code broke: raise it for the debug log
    finally:
        stop.set()
        watcher.join(timeout=5)


def _use_prefect_api() -> None:
    """Point Prefect at PREFECT_API_URL, or at the local server `cutover server start` runs."""
    from cutover import server

    url = os.environ.get("PREFECT_API_URL") or server.api_url()
    if not server.is_healthy(url):
        raise CutoverError(
            f"no Prefect server answers at {url}; start one with "
            "`cutover server start` (or set PREFECT_API_URL)"
        )
    os.environ["PREFECT_API_URL"] = url


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the scheduled flow: runs start at each cron time and whenever triggered."""
    from cutover.execution import load_inputs

    loaded = load_inputs(Path(args.file), args.env)  # refuse a bad runbook before serving it
    _use_prefect_api()
    from prefect.schedules import Cron

    from flows.scheduled import scheduled_cutover

    schedules = [Cron(args.cron, timezone=loaded.runbook.timezone)] if args.cron else []
    scheduled_cutover.serve(
        name=args.name or f"{loaded.runbook.name}-{args.mode}",
        schedules=schedules,
        parameters={
            "runbook": str(loaded.runbook_path),
            "profile": str(loaded.profile_path),
            "mode": args.mode,
            "auto_approve": args.auto_approve,
            "ledger": args.ledger,
            "new": args.mode == "rehearse",
        },
        description=loaded.runbook.title,
        tags=["cutover", args.mode],
    )
    return 0


# -- approve / status / report ---------------------------------------------------------


def cmd_approve(args: argparse.Namespace) -> int:
    from cutover.approve import approve
    from cutover.ledger import Ledger

    _use_prefect_api()
    ledger = Ledger(_ledger_url(args))
    execution_id, flow_run_id = approve(
        ledger,
        args.execution,
        step_id=args.step,
        by=args.by,
        decision=args.decision,
        comment=args.comment,
    )
    print(
        f"{args.decision} by {args.by} for {args.step} of {execution_id} "
        f"sent to flow run {flow_run_id}"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from cutover.ledger import Ledger
    from cutover.report import timeline_rows

    ledger = Ledger(_ledger_url(args))
    if not args.execution:
        rows = [
            {
                "execution": e.id,
                "mode": e.mode,
                "status": e.status,
                "started": f"{e.started_at:%Y-%m-%d %H:%M}",
            }
            for e in ledger.executions()
        ]
        columns = ["execution", "mode", "status", "started"]
        print(console.table(rows, columns) if rows else "no executions")
        return 0
    execution = ledger.execution(args.execution)
    print(f"{execution.id}: {execution.status} (clock {execution.clock_now or '-'})")
    print(
        console.table(
            timeline_rows(ledger, execution.id),
            ["runbook", "step", "planned", "finished", "outcome", "gates", "decision"],
        )
    )
    if execution.status == "running":
        from cutover.approve import open_questions

        for step_id, question in open_questions(ledger, execution.id):
            print(
                f"waiting for a decision at {step_id}: {question.get('question')}\n"
                f"  cutover approve {execution.id} --step {step_id} --by NAME "
                "--decision go|no-go"
            )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cutover.ledger import Ledger
    from cutover.report import write_report

    ledger = Ledger(_ledger_url(args))
    execution = ledger.execution(args.execution)
    path = write_report(ledger, execution.id, Path(execution.workdir))
    print(path)
    return 0


def _ledger_url(args: argparse.Namespace) -> str:
    """--ledger, else the profile's ledger (--env), else $CUTOVER_HOME/ledger.db."""
    if args.ledger:
        return args.ledger
    if args.env:
        from cutover.load import load_profile

        profile = load_profile(args.env)
        if profile.ledger:
            return profile.ledger
    return f"sqlite:///{_home() / 'ledger.db'}"


# -- server ---------------------------------------------------------------------------


def cmd_server(args: argparse.Namespace) -> int:
    from cutover import server

    home = Path(os.environ.get("PREFECT_HOME", ".prefect")).resolve()
    if args.action == "start":
        url = server.start(home, args.port)
        print(f"Prefect server: {url} (UI at {url.removesuffix('/api')})")
    elif args.action == "stop":
        print("stopped" if server.stop(home) else "no server was running")
    else:
        url = server.api_url(args.port)
        print(f"{url}: {'up' if server.is_healthy(url) else 'down'}")
    return 0


# -- argument parsing ----------------------------------------------------------------------


def _profile_arg(value: str) -> Path:
    path = Path(value)
    if not path.suffix and not path.exists():
        path = Path("config") / f"{value}.yaml"
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cutover", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("validate", help="check runbooks; one line per problem")
    p.add_argument("files", nargs="+")
    p.add_argument(
        "--env",
        type=_profile_arg,
        default=DEFAULT_PROFILE if DEFAULT_PROFILE.exists() else None,
        help="environment profile (path, or a name in config/); targets are checked against it",
    )
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("plan", help="the timeline of a runbook")
    p.add_argument("file")
    p.add_argument("--env", type=_profile_arg, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser("steps", help="the step types and their parameters")
    p.add_argument("--markdown", action="store_true", help="the reference as in docs/steps.md")
    p.set_defaults(handler=cmd_steps)

    for name, help_text in (
        ("run", "run a cutover on the wall clock"),
        ("rehearse", "rehearse a cutover on a virtual clock"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("file")
        p.add_argument("--env", type=_profile_arg, required=True)
        p.add_argument("--new", action="store_true", help="start afresh instead of resuming")
        p.add_argument("--execution-id", help="resume (or start) this execution")
        p.add_argument("--ledger", help="SQLAlchemy URL of the ledger")
        p.add_argument("--verbose", action="store_true", help="also print Prefect's own log")
        p.add_argument(
            "--poll-interval",
            type=float,
            default=2.0,
            help="seconds between checks while paused for a decision",
        )
        if name == "rehearse":
            p.add_argument(
                "--auto-approve",
                action="store_true",
                help="answer every go/no-go with go, recorded as automatic",
            )
            p.add_argument(
                "--pace",
                type=float,
                default=0.0,
                help="real seconds to spend at each step, to watch it in the UI",
            )
        p.set_defaults(handler=cmd_execute)

    p = sub.add_parser("serve", help="serve a runbook as a Prefect deployment with a schedule")
    p.add_argument("file")
    p.add_argument("--env", type=_profile_arg, required=True)
    p.add_argument("--mode", choices=["rehearse", "run"], default="rehearse")
    p.add_argument("--cron", help="e.g. '0 2 * * *', in the runbook's time zone")
    p.add_argument("--name", help="deployment name (default: RUNBOOK-MODE)")
    p.add_argument("--auto-approve", action="store_true", help="rehearsals only")
    p.add_argument("--ledger", help="SQLAlchemy URL of the ledger")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("approve", help="answer a go/no-go that a run is waiting for")
    p.add_argument("execution")
    p.add_argument("--step", required=True)
    p.add_argument("--by", required=True, help="your name, recorded in the ledger")
    p.add_argument("--decision", required=True, choices=["go", "no-go"])
    p.add_argument("--comment", default="")
    p.add_argument("--ledger", help="SQLAlchemy URL of the ledger")
    p.add_argument("--env", type=_profile_arg, help="take the ledger from this profile")
    p.set_defaults(handler=cmd_approve)

    p = sub.add_parser("status", help="executions, or one execution's steps")
    p.add_argument("execution", nargs="?")
    p.add_argument("--ledger", help="SQLAlchemy URL of the ledger")
    p.add_argument("--env", type=_profile_arg, help="take the ledger from this profile")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("report", help="write the report of an execution")
    p.add_argument("execution")
    p.add_argument("--ledger", help="SQLAlchemy URL of the ledger")
    p.add_argument("--env", type=_profile_arg, help="take the ledger from this profile")
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("server", help="a local Prefect server with its UI")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, default=4299)
    p.set_defaults(handler=cmd_server)
    return parser


if __name__ == "__main__":
    sys.exit(main())
