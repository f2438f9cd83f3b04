"""http.call and the `http` check against the sandbox's real HTTP services."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cutover.errors import ConnectError, StepError
from cutover.steps import StepContext
from sandbox.runtime import Sandbox
from tasks._http import api
from tasks.http import HttpCall, HttpCheck, http_call, http_check

MakeContext = Callable[..., StepContext]


@pytest.fixture
def ctx(fresh_sandbox: Sandbox, make_context: MakeContext) -> StepContext:
    return make_context(fresh_sandbox.profile()["targets"])


def test_check_passes_on_status_json_and_text(ctx: StepContext) -> None:
    params = HttpCheck.model_validate(
        {"target": "old-system", "path": "/health", "json": {"status": "ok", "core": "running"}}
    )
    verdict = http_check(params, ctx)
    assert verdict.passed, verdict.summary
    assert verdict.observed["status"] == 200
    assert verdict.observed["body"]["version"] == "2023.10.0"

    portal = HttpCheck(target="old-system", path="/", contains="Online Service Hall")
    assert http_check(portal, ctx).passed


def test_check_fails_on_status(fresh_sandbox: Sandbox, ctx: StepContext) -> None:
    fresh_sandbox.fault("old:health-fail")

    verdict = http_check(HttpCheck(target="old-system", path="/health"), ctx)

    assert not verdict.passed
    assert verdict.summary == "GET /health on old-system: status 503, expected 200"
    assert verdict.observed["body"]["status"] == "degraded"
    assert verdict.expected == {"status": 200}


def test_check_fails_on_json_subset(ctx: StepContext) -> None:
    params = HttpCheck.model_validate(
        {"target": "new-system", "path": "/version", "json": {"version": "2023.11.0"}}
    )
    verdict = http_check(params, ctx)
    assert not verdict.passed
    assert '$.version is "2023.10.0", expected "2023.11.0"' in verdict.summary


def test_unreachable_target_is_a_connect_error(make_context: MakeContext) -> None:
    ctx = make_context({"gone": {"http": {"url": "http://127.0.0.1:9", "timeout": 2}}})
    with pytest.raises(ConnectError, match="cannot reach http://127.0.0.1:9") as caught:
        http_check(HttpCheck(target="gone", path="/health"), ctx)
    assert caught.value.__cause__ is not None


def test_call_and_unless_makes_it_safe_to_rerun(fresh_sandbox: Sandbox, ctx: StepContext) -> None:
    params = HttpCall.model_validate(
        {
            "target": "old-system",
            "path": "/admin/access",
            "json": {"external": False},
            "unless": {"path": "/admin/access", "json": {"external": False}},
        }
    )

    first = http_call(params, ctx)
    second = http_call(params, ctx)

    assert first["skipped"] is False and first["status"] == 200
    assert first["body"] == {"external": False}
    assert second["skipped"] is True
    assert [a["path"] for a in fresh_sandbox.audit("old")] == ["/admin/access"]


def test_call_with_unexpected_status_fails_with_evidence(ctx: StepContext) -> None:
    params = HttpCall.model_validate(
        {"target": "old-system", "path": "/channels/nope/stop", "json": {}}
    )
    with pytest.raises(StepError, match="answered 404, expected 200, 201, 202, 204") as caught:
        http_call(params, ctx)
    assert caught.value.evidence["status"] == 404
    assert "no channel 'nope'" in caught.value.evidence["body"]["error"]


def test_bearer_token_comes_from_the_secret(
    fresh_sandbox: Sandbox, make_context: MakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLD_TOKEN", "s3cret")
    targets = fresh_sandbox.profile()["targets"]
    targets["old-system"]["http"]["token"] = {"secret": "env:OLD_TOKEN"}
    ctx = make_context(targets)
    with api(ctx, "old-system") as client:
        assert client.client.headers["Authorization"] == "Bearer s3cret"
    evidence = http_call(HttpCall(target="old-system", method="DELETE", path="/notice"), ctx)
    assert "s3cret" not in repr(evidence)


def test_missing_secret_is_a_step_error(fresh_sandbox: Sandbox, make_context: MakeContext) -> None:
    targets = fresh_sandbox.profile()["targets"]
    targets["old-system"]["http"]["token"] = {"secret": "env:CUTOVER_TEST_UNSET_TOKEN"}
    with pytest.raises(StepError, match="CUTOVER_TEST_UNSET_TOKEN is not set"):
        http_check(HttpCheck(target="old-system", path="/health"), make_context(targets))
