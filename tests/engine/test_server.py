"""`cutover server start` sets the server up the way PREFECT.md says it must be."""

from __future__ import annotations

import httpx
from prefect import get_client

from cutover import server


def test_zombie_automation_is_created_once_and_spares_paused_runs(prefect_api):
    server.ensure_zombie_automation(prefect_api)  # a second start must not add another
    with get_client(sync_client=True) as client:
        automations = client.read_automations_by_name(server.ZOMBIE_AUTOMATION)
    assert len(automations) == 1
    trigger = automations[0].trigger
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.Paused", "prefect.flow-run.Suspended"} <= trigger.expect
    assert automations[0].actions[0].state.value == "CRASHED"


def test_the_ui_is_served_and_points_at_this_api(prefect_api):
    base = prefect_api.removesuffix("/api")
    assert httpx.get(f"{base}/", timeout=10).status_code == 200
    settings = httpx.get(f"{base}/ui-settings", timeout=10).json()
    assert settings["api_url"] == prefect_api
