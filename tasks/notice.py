"""The public maintenance notice: publish it before a shutdown, clear it after."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cutover.errors import StepError
from cutover.steps import Evidence, StepContext, action
from cutover.types import Params, TargetName
from tasks._http import Api, api, truncate


class PublishNotice(Params):
    target: TargetName = Field(description="System whose portal shows the notice")
    text: str = Field(min_length=1, description="The notice as citizens will read it")
    until: str | None = Field(
        None, description="When the service is back, as shown to citizens (free text)"
    )


class ClearNotice(Params):
    target: TargetName = Field(description="System whose notice to remove")


def current_notice(client: Api) -> dict[str, Any] | None:
    """The published notice, or None when there is none (404, 204, or an empty text)."""
    response = client.expect("GET", "/notice", status=(200, 204, 404))
    if response.status_code != 200 or not response.content:
        return None
    try:
        body = response.json()
    except ValueError:
        return {"text": response.text, "until": None}
    # {"active": false, "text": null, ...} (the sandbox) or an empty object mean none.
    if not isinstance(body, dict) or body.get("active") is False or not body.get("text"):
        return None
    return {"text": body["text"], "until": body.get("until")}


@action("notice.publish")
def publish_notice(params: PublishNotice, ctx: StepContext) -> Evidence:
    """Publish the notice; skipped when the same text (and until) is already published."""
    wanted = {"text": params.text, "until": params.until}
    with api(ctx, params.target) as client:
        before = current_notice(client)
        if before == wanted:
            return {"skipped": True, "notice": _shown(before)}
        client.expect("PUT", "/notice", wanted, status=(200, 201, 204))
        after = current_notice(client)
    if after != wanted:
        raise StepError(
            f"notice on {params.target} was not published: it reads {_shown(after)}",
            evidence={"wanted": _shown(wanted), "published": _shown(after)},
        )
    return {"skipped": False, "notice": _shown(after), "replaced": _shown(before)}


@action("notice.clear")
def clear_notice(params: ClearNotice, ctx: StepContext) -> Evidence:
    """Remove the notice; skipped when there is none."""
    with api(ctx, params.target) as client:
        before = current_notice(client)
        if before is None:
            return {"skipped": True, "cleared": None}
        client.expect("DELETE", "/notice", status=(200, 204, 404))
        after = current_notice(client)
    if after is not None:
        raise StepError(
            f"notice on {params.target} is still published after DELETE /notice",
            evidence={"published": _shown(after)},
        )
    return {"skipped": False, "cleared": _shown(before)}


def _shown(notice: dict[str, Any] | None) -> dict[str, Any] | None:
    if notice is None:
        return None
    return {"text": truncate(str(notice["text"]), 500), "until": notice.get("until")}
