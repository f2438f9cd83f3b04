"""Retire the flow runs a killed process left behind.

A SIGKILL leaves a flow run and its phase subflows `Running` forever (PREFECT.md
§0.4). When the same execution resumes in a new flow run, the old ones are marked
Crashed, so people watching the UI see one live run, not a ghost beside it.
"""

from __future__ import annotations

from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.states import Crashed


def retire_flow_run(flow_run_id: str, superseded_by: str) -> list[str]:
    """Mark a stale flow run and its unfinished subflows Crashed; returns the ids retired."""
    retired = []
    message = f"its process died; the execution resumed in flow run {superseded_by}"
    with get_client(sync_client=True) as client:
        try:
            parent = client.read_flow_run(UUID(flow_run_id))
        except Exception:  # deleted, or from another server: nothing to retire
            return []
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])))
        for run in [*children, parent]:
            if run.state is not None and not run.state.is_final():
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
                retired.append(str(run.id))
    return retired
