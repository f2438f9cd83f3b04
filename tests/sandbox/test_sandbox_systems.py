"""The old/new system services and the hub, over real HTTP."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
import yaml

from cutover.profile import Profile
from sandbox.channels import CHANNEL_NAMES
from sandbox.runtime import Sandbox


def _count(sb: Sandbox, system: str, sql: str) -> int:
    conn = sqlite3.connect(sb.dir / f"{system}.db")
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def _business(url: str, channel: str, kind: str) -> httpx.Response:
    return httpx.post(f"{url}/business", json={"channel": channel, "kind": kind, "person_id": 7})


def test_health_old_ok_new_down(sandbox: Sandbox) -> None:
    old = httpx.get(f"{sandbox.old_url}/health")
    new = httpx.get(f"{sandbox.new_url}/health")
    assert old.status_code == 200
    assert old.json() == {
        "system": "old",
        "status": "ok",
        "version": "2023.10.0",
        "database": "ok",
        "core": "running",
        "frozen": False,
    }
    assert new.status_code == 503
    assert new.json()["status"] == "down" and new.json()["core"] == "stopped"


def test_channel_listing(sandbox: Sandbox) -> None:
    old = httpx.get(f"{sandbox.old_url}/channels").json()["channels"]
    new = httpx.get(f"{sandbox.new_url}/channels").json()["channels"]
    assert [c["name"] for c in old] == list(CHANNEL_NAMES) == [c["name"] for c in new]
    assert {c["state"] for c in old} == {"running"}
    assert {c["state"] for c in new} == {"stopped"}
    one = httpx.get(f"{sandbox.old_url}/channels/counter-pension").json()
    assert one == {
        "name": "counter-pension",
        "group": "counter",
        "state": "running",
        "stopped_business": [],
    }
    assert httpx.get(f"{sandbox.old_url}/channels/no-such").status_code == 404
    assert httpx.post(f"{sandbox.old_url}/channels/no-such/stop").status_code == 404


def test_stop_partial_then_whole_then_start(fresh_sandbox: Sandbox) -> None:
    url = fresh_sandbox.old_url
    stop = httpx.post(
        f"{url}/channels/online-hall/stop", json={"business": ["collection", "account"]}
    )
    assert stop.status_code == 200
    assert stop.json()["state"] == "partial"
    assert stop.json()["stopped_business"] == ["collection", "account"]
    before = _count(fresh_sandbox, "old", "SELECT count(*) FROM transactions")
    assert _business(url, "online-hall", "collection").status_code == 503
    assert _business(url, "online-hall", "query").status_code == 201
    assert _count(fresh_sandbox, "old", "SELECT count(*) FROM transactions") == before + 1
    assert httpx.get(f"{url}/channels/online-hall/probe").json() == {
        "ok": True,
        "channel": "online-hall",
    }
    assert httpx.post(f"{url}/channels/online-hall/stop").json()["state"] == "stopped"
    assert httpx.get(f"{url}/channels/online-hall/probe").status_code == 503
    assert _business(url, "online-hall", "query").status_code == 503
    started = httpx.post(f"{url}/channels/online-hall/start")
    assert started.json() == {
        "name": "online-hall",
        "group": "online",
        "state": "running",
        "stopped_business": [],
    }
    assert httpx.get(f"{url}/channels/online-hall/probe").status_code == 200
    assert (
        httpx.post(f"{url}/channels/online-hall/stop", json={"business": ["x"]}).status_code == 400
    )


def test_core_stopped_refuses_business_and_health_down(fresh_sandbox: Sandbox) -> None:
    url = fresh_sandbox.old_url
    httpx.post(f"{url}/channels/core/stop").raise_for_status()
    assert _business(url, "counter-pension", "benefit").status_code == 503
    assert httpx.get(f"{url}/channels/counter-pension/probe").status_code == 503
    health = httpx.get(f"{url}/health")
    assert health.status_code == 503 and health.json()["status"] == "down"


def test_refuse_stop_fault(fresh_sandbox: Sandbox) -> None:
    url = fresh_sandbox.old_url
    fresh_sandbox.fault("old:refuse-stop:core")
    refused = httpx.post(f"{url}/channels/core/stop")
    assert refused.status_code == 409
    assert httpx.get(f"{url}/channels/core").json()["state"] == "running"
    # The new system is not affected by an old-system fault.
    assert httpx.post(f"{fresh_sandbox.new_url}/channels/core/stop").status_code == 200
    fresh_sandbox.clear_fault("old:refuse-stop:core")
    assert httpx.post(f"{url}/channels/core/stop").status_code == 200


def test_faults_over_http_and_health_fail(fresh_sandbox: Sandbox) -> None:
    url = fresh_sandbox.old_url
    added = httpx.post(f"{url}/_faults", json={"name": "health-fail"})
    assert added.json() == {"faults": ["old:health-fail"]}
    health = httpx.get(f"{url}/health")
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert httpx.get(f"{fresh_sandbox.new_url}/health").json()["status"] == "down"
    assert httpx.post(f"{url}/_faults", json={"name": "no-such"}).status_code == 400
    assert httpx.delete(f"{url}/_faults/health-fail").json() == {"faults": []}
    assert httpx.get(f"{url}/health").status_code == 200
    with pytest.raises(ValueError, match="unknown fault"):
        fresh_sandbox.fault("old:refuse-stop:no-such-channel")


def test_notice_and_portal(fresh_sandbox: Sandbox) -> None:
    url = fresh_sandbox.old_url
    absent = httpx.get(f"{url}/notice")
    assert absent.status_code == 404 and absent.json()["active"] is False
    assert httpx.get(f"{url}/").status_code == 200
    text = "System upgrade from 23 Nov 18:00; services resume 1 Dec."
    put = httpx.put(f"{url}/notice", json={"text": text, "until": "2023-12-01T08:00:00+08:00"})
    assert put.json()["active"] is True and put.json()["text"] == text
    httpx.post(f"{url}/channels/online-hall/stop").raise_for_status()
    portal = httpx.get(f"{url}/")
    assert portal.status_code == 503
    assert text in portal.text
    assert httpx.get(f"{url}/notice").json()["text"] == text
    assert httpx.delete(f"{url}/notice").json()["active"] is False
    assert httpx.get(f"{url}/notice").status_code == 404
    assert text not in httpx.get(f"{url}/").text


def test_freeze_trigger_gives_423(fresh_sandbox: Sandbox) -> None:
    url = fresh_sandbox.old_url
    conn = sqlite3.connect(fresh_sandbox.dir / "old.db")
    conn.execute(
        "CREATE TRIGGER freeze_transactions BEFORE INSERT ON transactions "
        "BEGIN SELECT RAISE(ABORT, 'frozen by cutover'); END"
    )
    conn.commit()
    try:
        assert httpx.get(f"{url}/health").json()["frozen"] is True
        refused = _business(url, "counter-pension", "collection")
        assert refused.status_code == 423
        assert "frozen" in refused.json()["error"]
        assert httpx.post(f"{url}/jobs/job-statistics/run").status_code == 201  # other table
    finally:
        conn.execute("DROP TRIGGER freeze_transactions")
        conn.commit()
        conn.close()
    assert _business(url, "counter-pension", "collection").status_code == 201
    assert httpx.get(f"{url}/health").json()["frozen"] is False


def test_deploy_version_and_audit(fresh_sandbox: Sandbox) -> None:
    url = fresh_sandbox.new_url
    assert httpx.get(f"{url}/version").json()["version"] == "2023.10.0"
    deployed = httpx.post(f"{url}/admin/deploy", json={"version": "2023.12.0"})
    assert deployed.status_code == 200 and deployed.json()["version"] == "2023.12.0"
    assert httpx.get(f"{url}/version").json()["version"] == "2023.12.0"
    assert httpx.post(f"{url}/admin/deploy", json={}).status_code == 400
    calls = fresh_sandbox.audit("new")
    assert [(c["method"], c["path"], c["body"], c["status"]) for c in calls] == [
        ("POST", "/admin/deploy", {"version": "2023.12.0"}, 200),
        ("POST", "/admin/deploy", {}, 400),
    ]
    assert httpx.get(f"{url}/_audit").json() == calls
    assert fresh_sandbox.audit("old") == []


def test_access_and_accounts(fresh_sandbox: Sandbox) -> None:
    url = fresh_sandbox.new_url
    assert httpx.get(f"{url}/admin/access").json() == {"external": True}
    assert httpx.post(f"{url}/admin/access", json={"external": False}).json() == {"external": False}
    frozen = httpx.post(f"{url}/admin/accounts/freeze", json={"city": "Taiyuan"}).json()
    assert [a["city"] for a in frozen["accounts"] if a["frozen"]] == ["Taiyuan"]
    everyone = httpx.post(f"{url}/admin/accounts/freeze", json={"city": "all"}).json()
    assert all(a["frozen"] for a in everyone["accounts"]) and len(everyone["accounts"]) == 11
    httpx.post(f"{url}/admin/accounts/unfreeze", json={"city": "all"}).raise_for_status()
    assert not any(a["frozen"] for a in httpx.get(f"{url}/admin/accounts").json()["accounts"])
    assert httpx.post(f"{url}/admin/accounts/freeze", json={"city": "Atlantis"}).status_code == 404


def test_jobs_need_a_running_channel(fresh_sandbox: Sandbox) -> None:
    new = fresh_sandbox.new_url
    jobs = "SELECT count(*) FROM job_output WHERE job = 'job-statistics'"
    assert httpx.post(f"{new}/jobs/job-statistics/run").status_code == 503
    httpx.post(f"{new}/channels/core/start").raise_for_status()
    httpx.post(f"{new}/channels/job-statistics/start").raise_for_status()
    assert _count(fresh_sandbox, "new", jobs) == 1  # starting the channel ran it once
    run = httpx.post(f"{new}/jobs/job-statistics/run")
    assert run.status_code == 201 and run.json()["rows"] == 0  # new system: no data loaded yet
    assert _count(fresh_sandbox, "new", jobs) == 2
    assert httpx.post(f"{new}/jobs/core/run").status_code == 404
    old = httpx.post(f"{fresh_sandbox.old_url}/jobs/job-statistics/run").json()
    assert old["rows"] == _count(fresh_sandbox, "old", "SELECT count(*) FROM contributions")


def test_hub_notify(fresh_sandbox: Sandbox) -> None:
    url = fresh_sandbox.hub_url
    sent = httpx.post(
        f"{url}/notify",
        json={"to": ["tax-bureau"], "subject": "Batch ready", "body": "see inbox", "channel": "im"},
    )
    assert sent.status_code == 202
    listed = httpx.get(f"{url}/notify").json()
    assert [(m["to"], m["subject"], m["channel"]) for m in listed] == [
        (["tax-bureau"], "Batch ready", "im")
    ]
    assert httpx.post(f"{url}/notify", json={"body": "no subject"}).status_code == 400


def test_hub_sends_a_message_once_per_idempotency_key(fresh_sandbox: Sandbox) -> None:
    url = fresh_sandbox.hub_url
    message = {"id": "exec-1:notify-partners", "to": ["banks"], "subject": "Keep old interfaces"}
    first = httpx.post(f"{url}/notify", json=message)
    again = httpx.post(f"{url}/notify", json=message)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert len(httpx.get(f"{url}/notify").json()) == 1


def test_profile_matches_the_model(sandbox: Sandbox) -> None:
    profile = Profile.model_validate(yaml.safe_load(sandbox.profile_path.read_text()))
    assert set(profile.targets) == {
        "old-system",
        "new-system",
        "tax-drop",
        "tax-ftp",
        "notify-hub",
        "receiver-db",
    }
    assert profile.targets["old-system"].http.url == sandbox.old_url
    assert profile.targets["tax-drop"].sftp.port == sandbox.sftp_port
    assert profile.targets["tax-ftp"].ftp.password.resolve() == (
        (sandbox.dir / "ftp_password").read_text().strip()
    )
    assert (
        sandbox.dir / "ftp_password"
    ).read_text().strip() not in sandbox.profile_path.read_text()
