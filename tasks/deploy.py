"""Releases: put a version on a system, skipping when it already runs it."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cutover.errors import StepError
from cutover.steps import Evidence, StepContext, action
from cutover.types import Params, TargetName
from tasks._http import Api, api, body_of


class DeployRelease(Params):
    target: TargetName = Field(description="System to deploy to")
    version: str = Field(min_length=1, description="Version to deploy, e.g. 2023.11.0")


def current_version(client: Api) -> dict[str, Any]:
    body = client.get_json("/version")
    if not isinstance(body, dict) or "version" not in body:
        raise StepError(
            f"GET /version on {client.target} has no version", evidence={"body": repr(body)[:500]}
        )
    return body


@action("deploy.release")
def deploy_release(params: DeployRelease, ctx: StepContext) -> Evidence:
    """Deploy `version` with POST /admin/deploy; skipped when /version already reports it."""
    with api(ctx, params.target) as client:
        before = current_version(client)
        if before["version"] == params.version:
            return {
                "skipped": True,
                "version": params.version,
                "deployed_at": before.get("deployed_at"),
            }
        response = client.expect(
            "POST", "/admin/deploy", {"version": params.version}, status=(200, 201, 202)
        )
        after = current_version(client)
    evidence = {
        "skipped": False,
        "previous": before["version"],
        "version": after["version"],
        "deployed_at": after.get("deployed_at"),
        "response": body_of(response),
    }
    if after["version"] != params.version:
        raise StepError(
            f"deploy of {params.version} to {params.target} did not take: "
            f"/version still reports {after['version']}",
            evidence=evidence,
        )
    return evidence
