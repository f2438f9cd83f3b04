"""channels.stop / channels.start / channels.state against the sandbox's old and new systems."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cutover.errors import StepError
from cutover.steps import StepContext
from sandbox.runtime import Sandbox
from tasks.channels import (
    ChannelState,
    StartChannels,
    StopChannels,
    channel_state,
    start_channels,
    stop_channels,
)


@pytest.fixture
def ctx(fresh_sandbox: Sandbox, make_context: Callable[..., StepContext]) -> StepContext:
    return make_context(fresh_sandbox.profile()["targets"])


def admin_calls(sb: Sandbox, system: str = "old", verb: str = "") -> list[str]:
    return [a["path"] for a in sb.audit(system) if a["path"].endswith(verb)]


def test_stop_acts_once_and_rerun_skips(fresh_sandbox: Sandbox, ctx: StepContext) -> None:
    params = StopChannels(target="old-system", channels=["group:counter", "online-hall"])

    first = stop_channels(params, ctx)

    counters = [
        "counter-pension",
        "counter-unemployment",
        "counter-work-injury",
        "counter-resident",
    ]
    assert sorted(first["stopped"]) == sorted([*counters, "online-hall"])
    assert first["skipped"] == [] and first["refused"] == {}
    assert set(first["states"].values()) == {"stopped"}
    assert len(admin_calls(fresh_sandbox, verb="/stop")) == 5

    second = stop_channels(params, ctx)

    assert second["stopped"] == []
    assert sorted(second["skipped"]) == sorted(first["stopped"])
    assert len(admin_calls(fresh_sandbox, verb="/stop")) == 5  # no second admin call


def test_start_only_touches_stopped_channels(fresh_sandbox: Sandbox, ctx: StepContext) -> None:
    stop_channels(
        StopChannels(target="old-system", channels=["app-citizen", "job-statistics"]), ctx
    )

    started = start_channels(StartChannels(target="old-system", channels=["all"]), ctx)

    assert sorted(started["started"]) == ["app-citizen", "job-statistics"]
    assert len(started["skipped"]) == 12
    assert admin_calls(fresh_sandbox, verb="/start") == [
        "/channels/app-citizen/start",
        "/channels/job-statistics/start",
    ]
    again = start_channels(StartChannels(target="old-system", channels=["all"]), ctx)
    assert again["started"] == [] and len(again["skipped"]) == 14
    assert len(admin_calls(fresh_sandbox, verb="/start")) == 2


def test_partial_stop_by_business(fresh_sandbox: Sandbox, ctx: StepContext) -> None:
    params = StopChannels(
        target="old-system", channels=["group:counter"], business=["collection", "account"]
    )

    done = stop_channels(params, ctx)

    assert set(done["states"].values()) == {"partial"}
    audit = fresh_sandbox.audit("old")
    assert audit[0]["body"] == {"business": ["collection", "account"]}
    partial = ChannelState(target="old-system", channels=["group:counter"], state="partial")
    assert channel_state(partial, ctx).passed
    # Re-run: already partial with those kinds stopped, so nothing is sent.
    assert stop_channels(params, ctx)["stopped"] == []
    assert len(fresh_sandbox.audit("old")) == 4
    # A whole-channel stop still acts on a partly stopped channel.
    whole = stop_channels(StopChannels(target="old-system", channels=["counter-pension"]), ctx)
    assert whole["stopped"] == ["counter-pension"]


def test_refused_stop_names_the_channel(fresh_sandbox: Sandbox, ctx: StepContext) -> None:
    fresh_sandbox.fault("old:refuse-stop:online-hall")

    with pytest.raises(StepError) as caught:
        stop_channels(StopChannels(target="old-system", channels=["group:online"]), ctx)

    assert "online-hall" in str(caught.value) and "refused" in str(caught.value)
    evidence = caught.value.evidence
    assert sorted(evidence["stopped"]) == ["app-citizen", "app-employer", "nearby-service"]
    assert evidence["refused"]["online-hall"]["status"] == 409
    assert evidence["states"]["online-hall"] == "running"
    assert evidence["skipped"] == []


def test_unknown_channel_is_an_error(ctx: StepContext) -> None:
    with pytest.raises(StepError, match="no channel or group nope, group:missing"):
        stop_channels(
            StopChannels(target="old-system", channels=["nope", "group:missing", "core"]), ctx
        )


def test_state_check(ctx: StepContext) -> None:
    stopped = ChannelState(target="new-system", channels=["all"], state="stopped")
    verdict = channel_state(stopped, ctx)
    assert verdict.passed and verdict.summary == "all 14 channels stopped"

    running = ChannelState(target="new-system", channels=["core", "group:jobs"], state="running")
    verdict = channel_state(running, ctx)
    assert not verdict.passed
    assert verdict.summary.startswith("4 of 4 channels not running: core is stopped")
    assert verdict.observed["job-statistics"] == "stopped"
    assert verdict.expected == "running"
