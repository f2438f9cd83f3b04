"""Notifications through the hub: once per step of an execution, however often it runs.

The message carries an idempotency key made of the execution id and the step
id, both as an `Idempotency-Key` header and as the body's `id` field, so a hub
that deduplicates can do so. On our side, check-then-act uses two records:
- the receipt this step writes in the execution's workdir after the hub took
  the message (what was sent, to whom, when, the hub's answer);
- the hub's own list (GET /notify), when it keeps our key.
Either one means the message went out, and it is not sent again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import Field

from cutover.errors import StepError
from cutover.steps import Evidence, StepContext, action
from cutover.types import Params, TargetName
from tasks._http import Api, api, body_of, truncate


class SendNotification(Params):
    target: TargetName = Field(description="Target whose `notify` endpoint is the hub")
    to: list[str] = Field(min_length=1, description="Recipients (people or groups)")
    subject: str = Field(min_length=1, description="Subject line")
    body: str = Field("", description="Message text")
    channel: str = Field("im", description="Delivery channel the hub uses: im, sms, email")


def idempotency_key(ctx: StepContext) -> str:
    return f"cutover:{ctx.execution_id}:{ctx.step_id}"


def receipt_path(ctx: StepContext) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", ctx.step_id)
    return ctx.workdir / "notifications" / f"{safe}.json"


def on_hub(client: Api, key: str) -> dict[str, Any] | None:
    """The hub's record of `key`, or None (also when the hub cannot list)."""
    response = client.request("GET", "/notify")
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):  # {"notifications": [...]} or a similar wrapper
        body = next((v for v in body.values() if isinstance(v, list)), [])
    if not isinstance(body, list):
        return None
    keys = ("id", "idempotency_key", "key")
    return next(
        (m for m in body if isinstance(m, dict) and any(m.get(k) == key for k in keys)), None
    )


def _write_receipt(path: Path, record: Evidence) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1), "utf-8")
    tmp.replace(path)


@action("notify.send")
def send_notification(params: SendNotification, ctx: StepContext) -> Evidence:
    """Send one message via the hub's POST /notify; never twice for the same step run."""
    key = idempotency_key(ctx)
    message = {
        "id": key,
        "to": params.to,
        "subject": params.subject,
        "body": params.body,
        "channel": params.channel,
    }
    sent = {**message, "body": truncate(params.body)}
    receipt = receipt_path(ctx)
    if receipt.is_file():
        try:
            earlier = json.loads(receipt.read_text("utf-8"))
        except ValueError as exc:
            raise StepError(f"notification receipt {receipt} is unreadable") from exc
        return {"skipped": True, "reason": "sent before by this step", **earlier}
    with api(ctx, params.target, facet="notify", headers={"Idempotency-Key": key}) as client:
        if on_hub(client, key) is not None:
            return {"skipped": True, "reason": "the hub already has this message", "sent": sent}
        response = client.expect("POST", "/notify", message, status=(200, 201, 202))
    record = {
        "sent": sent,
        "at": ctx.clock.now().isoformat(),
        "status": response.status_code,
        "response": body_of(response),
    }
    _write_receipt(receipt, record)
    return {"skipped": False, **record}
