"""Business channels: stop, start, and check their state.

Each action is check-then-act: it reads every channel's state, acts only on
the channels not yet in the wanted state, then reads again and verifies. A
re-run after a crash therefore makes no second admin call for a channel that
was already handled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from cutover.errors import StepError
from cutover.steps import Evidence, StepContext, Verdict, action, check
from cutover.types import Params, TargetName
from tasks._http import Api, api, body_of, truncate

State = Literal["running", "stopped", "partial"]
Channel = dict[str, Any]  # one entry of GET /channels


class StopChannels(Params):
    target: TargetName = Field(description="System whose channels to stop")
    channels: list[str] = Field(
        min_length=1,
        description="Channel names, group selectors like 'group:counter', or ['all']",
    )
    business: list[str] | None = Field(
        None,
        description="Stop only these kinds of business (e.g. collection, benefit) and "
        "leave the channel partly running; omit to stop the whole channel",
    )


class StartChannels(Params):
    target: TargetName = Field(description="System whose channels to start")
    channels: list[str] = Field(
        min_length=1,
        description="Channel names, group selectors like 'group:counter', or ['all']",
    )


class ChannelState(Params):
    target: TargetName = Field(description="System whose channels to check")
    channels: list[str] = Field(
        min_length=1,
        description="Channel names, group selectors like 'group:counter', or ['all']",
    )
    state: State = Field(description="The state every listed channel must be in")


def read_channels(client: Api) -> dict[str, Channel]:
    body = client.get_json("/channels")
    try:
        return {c["name"]: c for c in body["channels"]}
    except (KeyError, TypeError) as exc:
        raise StepError(
            f"GET /channels on {client.target} answered an unexpected shape",
            evidence={"body": truncate(repr(body))},
        ) from exc


def resolve(selectors: list[str], known: dict[str, Channel]) -> tuple[list[str], list[str]]:
    """Channel names the selectors pick, in the system's order, and selectors that pick none."""
    picked: set[str] = set()
    unknown: list[str] = []
    for selector in selectors:
        if selector == "all":
            names = set(known)
        elif selector.startswith("group:"):
            group = selector.removeprefix("group:")
            names = {n for n, c in known.items() if c.get("group") == group}
        else:
            names = {selector} if selector in known else set()
        if not names:
            unknown.append(selector)
        picked |= names
    return [n for n in known if n in picked], unknown


def _picked(client: Api, selectors: list[str]) -> tuple[list[str], dict[str, Channel]]:
    known = read_channels(client)
    names, unknown = resolve(selectors, known)
    if unknown:
        raise StepError(
            f"{client.target} has no channel or group {', '.join(unknown)}; "
            f"known channels: {', '.join(known)}",
            evidence={"unknown": unknown, "known": list(known)},
        )
    return names, known


def _is_stopped(business: list[str] | None) -> Callable[[Channel], bool]:
    def done(channel: Channel) -> bool:
        if channel.get("state") == "stopped":
            return True
        if business is None:
            return False
        return set(business) <= set(channel.get("stopped_business") or [])

    return done


def _is_running(channel: Channel) -> bool:
    return channel.get("state") == "running"


def _apply(
    client: Api,
    selectors: list[str],
    done: Callable[[Channel], bool],
    verb: Literal["stop", "start"],
    body: dict[str, Any],
) -> Evidence:
    """Act on every picked channel that is not `done`, then re-read and verify."""
    names, before = _picked(client, selectors)
    acted: list[str] = []
    skipped = [n for n in names if done(before[n])]
    refused: dict[str, Any] = {}
    for name in names:
        if name in skipped:
            continue
        response = client.request("POST", f"/channels/{name}/{verb}", body)
        if response.status_code == 200:
            acted.append(name)
        else:
            # Carry on with the others: in a shutdown, every channel that can be
            # stopped should be, and the error below names the rest.
            refused[name] = {"status": response.status_code, "body": body_of(response)}
    after = read_channels(client)
    missed = [n for n in acted if not done(after.get(n, {}))]
    past = "stopped" if verb == "stop" else "started"
    evidence: Evidence = {
        "target": client.target,
        past: acted,
        "skipped": skipped,
        "refused": refused,
        "not_reached": missed,
        "states": {n: after.get(n, {}).get("state") for n in names},
    }
    if refused or missed:
        parts = []
        if refused:
            parts.append(f"refused {verb}: {', '.join(refused)}")
        if missed:
            parts.append(f"did not {verb}: {', '.join(missed)}")
        message = f"channels.{verb} on {client.target}: {'; '.join(parts)}"
        raise StepError(message, evidence=evidence)
    return evidence


@action("channels.stop")
def stop_channels(params: StopChannels, ctx: StepContext) -> Evidence:
    """Stop channels (or some kinds of business on them); ones already stopped are left alone."""
    body: dict[str, Any] = {} if params.business is None else {"business": params.business}
    with api(ctx, params.target) as client:
        evidence = _apply(client, params.channels, _is_stopped(params.business), "stop", body)
    if params.business is not None:
        evidence["business"] = params.business
    return evidence


@action("channels.start")
def start_channels(params: StartChannels, ctx: StepContext) -> Evidence:
    """Start channels; ones already running are left alone (starting a job channel runs it)."""
    with api(ctx, params.target) as client:
        return _apply(client, params.channels, _is_running, "start", {})


@check("channels.state")
def channel_state(params: ChannelState, ctx: StepContext) -> Verdict:
    """Passes when every listed channel is in the given state."""
    with api(ctx, params.target) as client:
        known = read_channels(client)
    names, unknown = resolve(params.channels, known)
    observed: dict[str, Any] = {n: known[n].get("state") for n in names}
    if unknown:
        return Verdict(
            False, f"{params.target} has no channel or group {', '.join(unknown)}", observed
        )
    wrong = [n for n in names if observed[n] != params.state]
    if wrong:
        detail = ", ".join(f"{n} is {observed[n]}" for n in wrong)
        return Verdict(
            False,
            f"{len(wrong)} of {len(names)} channels not {params.state}: {detail}",
            observed,
            params.state,
        )
    return Verdict(True, f"all {len(names)} channels {params.state}", observed, params.state)
