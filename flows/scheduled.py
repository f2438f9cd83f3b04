"""Scheduled automatic runs: a flow that starts (or resumes) an execution and runs it.

`cutover serve` serves this flow with a cron schedule in the runbook's time zone,
so a nightly rehearsal against the sandbox, or a timed stage of a real cutover,
starts by itself and shows in the Prefect UI like any other run. The parameters
are paths and flags, which is what a deployment can carry. (No postponed annotations
here: Prefect builds the parameter schema from the signature at run time.)
"""

from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State

from cutover.execution import ledger_url_for, load_inputs, start_or_resume
from cutover.ledger import Ledger
from flows.cutover import cutover


@flow(name="scheduled-cutover", flow_run_name="{mode}: {runbook}", persist_result=False)
def scheduled_cutover(
    runbook: str,
    profile: str,
    mode: Literal["run", "rehearse"] = "rehearse",
    auto_approve: bool = False,
    ledger: str | None = None,
    new: bool = False,
) -> State:
    """Start or resume an execution of `runbook` on `profile`; ends in the cutover's state."""
    if auto_approve and mode != "rehearse":
        raise ValueError("auto_approve is only for rehearsals; a real run asks people")
    loaded = load_inputs(Path(runbook), Path(profile))
    ledger_url = ledger_url_for(loaded, ledger)
    options = {"auto_approve": auto_approve} if mode == "rehearse" else {}
    execution, resumed = start_or_resume(
        Ledger(ledger_url), loaded, mode=mode, options=options, new=new
    )
    get_run_logger().info("%s execution %s", "resuming" if resumed else "starting", execution.id)
    # The cutover's final state (Completed, or Failed named Halted / RolledBack / ...)
    # becomes this run's, so the deployment's run history shows how each one ended.
    return cutover(ledger_url=ledger_url, execution_id=execution.id, return_state=True)
