"""notify.send, deploy.release, notice.publish / notice.clear against the sandbox."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cutover.errors import StepError
from cutover.steps import StepContext
from sandbox.runtime import Sandbox
from tasks.deploy import DeployRelease, deploy_release
from tasks.notice import ClearNotice, PublishNotice, clear_notice, publish_notice
from tasks.notify import SendNotification, send_notification

MakeContext = Callable[..., StepContext]


@pytest.fixture
def ctx(fresh_sandbox: Sandbox, make_context: MakeContext) -> StepContext:
    return make_context(fresh_sandbox.profile()["targets"])


MESSAGE = SendNotification(
    target="notify-hub",
    to=["duty-manager", "tax-liaison"],
    subject="Counters stopped",
    body="All counter channels stopped at 18:00.",
)


def test_notify_sends_once_per_step(
    fresh_sandbox: Sandbox, ctx: StepContext, make_context: MakeContext
) -> None:
    first = send_notification(MESSAGE, ctx)
    again = send_notification(MESSAGE, ctx)  # a retry or a resume of the same step

    assert first["skipped"] is False and first["status"] == 202
    assert first["sent"]["id"] == "cutover:exec-1:step-1"
    assert first["sent"]["to"] == ["duty-manager", "tax-liaison"]
    assert again["skipped"] is True and again["sent"] == first["sent"]
    hub = fresh_sandbox.notifications()
    assert [m["subject"] for m in hub] == ["Counters stopped"]
    assert hub[0]["to"] == ["duty-manager", "tax-liaison"] and hub[0]["channel"] == "im"

    other_step = make_context(fresh_sandbox.profile()["targets"], step_id="step-2")
    assert send_notification(MESSAGE, other_step)["skipped"] is False
    assert len(fresh_sandbox.notifications()) == 2


def test_deploy_skips_when_current_and_verifies(fresh_sandbox: Sandbox, ctx: StepContext) -> None:
    current = deploy_release(DeployRelease(target="new-system", version="2023.10.0"), ctx)
    assert current["skipped"] is True and current["version"] == "2023.10.0"
    assert fresh_sandbox.audit("new") == []

    done = deploy_release(DeployRelease(target="new-system", version="2023.11.0"), ctx)
    assert done["skipped"] is False
    assert (done["previous"], done["version"]) == ("2023.10.0", "2023.11.0")

    again = deploy_release(DeployRelease(target="new-system", version="2023.11.0"), ctx)
    assert again["skipped"] is True
    assert [a["path"] for a in fresh_sandbox.audit("new")] == ["/admin/deploy"]


def test_notice_publish_and_clear_are_check_then_act(
    fresh_sandbox: Sandbox, ctx: StepContext
) -> None:
    notice = PublishNotice(
        target="old-system", text="系统升级，暂停服务。", until="2023-12-05 08:00"
    )

    assert publish_notice(notice, ctx)["skipped"] is False
    assert publish_notice(notice, ctx)["skipped"] is True
    changed = publish_notice(notice.model_copy(update={"until": "2023-12-06 08:00"}), ctx)
    assert changed["skipped"] is False and changed["replaced"]["until"] == "2023-12-05 08:00"

    assert clear_notice(ClearNotice(target="old-system"), ctx)["skipped"] is False
    assert clear_notice(ClearNotice(target="old-system"), ctx)["skipped"] is True
    calls = [(a["method"], a["path"]) for a in fresh_sandbox.audit("old")]
    assert calls == [("PUT", "/notice"), ("PUT", "/notice"), ("DELETE", "/notice")]


def test_target_without_the_facet_is_an_error(ctx: StepContext) -> None:
    with pytest.raises(StepError, match="'old-system' has no notify endpoint"):
        send_notification(MESSAGE.model_copy(update={"target": "old-system"}), ctx)
