"""Plain HTTP: one admin call (`http.call`) and a response check (`http`)."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ConfigDict, Field

from cutover.steps import Evidence, StepContext, Verdict, action, check
from cutover.types import Params, TargetName
from tasks._http import Api, api, body_of, response_evidence, subset_mismatch, truncate


class _ResponseMatch(Params):
    """What a response must look like; shared by the `http` check and `http.call`'s `unless`."""

    # `json` would shadow BaseModel.json, so the field is json_body and runbooks write `json:`.
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    method: str = Field("GET", description="HTTP method")
    path: str = Field(description="Path under the target's base URL, e.g. /health")
    status: int | list[int] = Field(200, description="Accepted status code(s)")
    json_body: dict[str, Any] | None = Field(
        None, alias="json", description="The JSON body must contain this (a subset match)"
    )
    contains: str | None = Field(None, description="The body text must contain this")


class UnlessProbe(_ResponseMatch):
    """A read-only request whose match means the call's effect is already in place."""


class HttpCall(Params):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    target: TargetName = Field(description="System whose HTTP API to call")
    method: str = Field("POST", description="HTTP method")
    path: str = Field(description="Path under the target's base URL, e.g. /admin/access")
    json_body: Any = Field(None, alias="json", description="JSON request body, if any")
    expect_status: list[int] = Field(
        [200, 201, 202, 204], description="Status codes that count as success"
    )
    unless: UnlessProbe | None = Field(
        None,
        description="Check first: when this request's response matches, the call is "
        "skipped (makes a non-idempotent call safe to re-run)",
    )


class HttpCheck(_ResponseMatch):
    target: TargetName = Field(description="System to ask")


def _mismatch(match: _ResponseMatch, response: httpx.Response) -> str | None:
    """Why `response` does not match, or None when it does."""
    statuses = [match.status] if isinstance(match.status, int) else match.status
    if response.status_code not in statuses:
        return f"status {response.status_code}, expected {' or '.join(map(str, statuses))}"
    if match.contains is not None and match.contains not in response.text:
        return f"body does not contain {match.contains!r}"
    if match.json_body is not None:
        try:
            body = response.json()
        except ValueError:
            return "body is not JSON"
        return subset_mismatch(match.json_body, body)
    return None


def _probe(client: Api, match: _ResponseMatch) -> tuple[httpx.Response, str | None]:
    response = client.request(match.method, match.path)
    return response, _mismatch(match, response)


@action("http.call")
def http_call(params: HttpCall, ctx: StepContext) -> Evidence:
    """Make one admin call; with `unless`, skip it when its effect is already visible."""
    with api(ctx, params.target) as client:
        if params.unless is not None:
            response, why = _probe(client, params.unless)
            if why is None:
                return {
                    "skipped": True,
                    "reason": f"{params.unless.method} {params.unless.path} already matches",
                    "probe": response_evidence(response),
                }
        response = client.expect(
            params.method, params.path, params.json_body, status=params.expect_status
        )
        return {"skipped": False, **response_evidence(response)}


@check("http")
def http_check(params: HttpCheck, ctx: StepContext) -> Verdict:
    """Passes when the response has the status and contains the JSON subset and text given."""
    with api(ctx, params.target) as client:
        response, why = _probe(client, params)
    where = f"{params.method.upper()} {params.path} on {params.target}"
    observed = {"status": response.status_code, "body": body_of(response)}
    expected: dict[str, Any] = {"status": params.status}
    if params.json_body is not None:
        expected["json"] = params.json_body
    if params.contains is not None:
        expected["contains"] = params.contains
    if why is None:
        return Verdict(True, f"{where}: {response.status_code} as expected", observed, expected)
    return Verdict(False, truncate(f"{where}: {why}", 300), observed, expected)
