"""The HTTP service of one system (`old` or `new`) and the notification hub.

The admin API mirrors what the Shanxi and Qingyuan notices ask operators to do
by hand: stop and start channels per business kind, show a maintenance notice,
deploy a version, close external access, freeze a city's user accounts, run the
scheduled jobs. Business writes go to the real SQLite database, so a freeze
made by a step (triggers that `RAISE(ABORT)`) is felt here as 423 Locked.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from sandbox.channels import CHANNEL_NAMES, GROUP_OF, KINDS, ChannelBoard
from sandbox.data import CITIES, connect
from sandbox.faults import FaultSet, qualify
from sandbox.web import HttpError, Request, Response, Route

INITIAL_VERSION = "2023.10.0"
ACCOUNTS_PER_CITY = 120
_JOB_QUERIES = {
    "job-statistics": "SELECT count(*) FROM contributions",
    "job-qualification": "SELECT count(*) FROM persons WHERE status = 'active'",
    "job-card-extraction": "SELECT count(*) FROM persons",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _frozen(conn: sqlite3.Connection, table: str | None = None) -> bool:
    """Any trigger means a freeze: the sandbox schema itself has none."""
    sql = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
    args: tuple = ()
    if table:
        sql, args = sql + " AND tbl_name = ?", (table,)
    return conn.execute(sql, args).fetchone()[0] > 0


class SystemService:
    """State and routes of one system; `running` is False for the new system,
    which waits, every channel stopped, until the staged restore starts it."""

    def __init__(self, name: str, db_path: Path, faults: FaultSet, running: bool) -> None:
        self.name = name
        self.db_path = db_path
        self.faults = faults
        self.channels = ChannelBoard(running)
        self._lock = threading.Lock()
        self._version = {"version": INITIAL_VERSION, "deployed_at": "2023-10-08T20:00:00+08:00"}
        self._notice: dict | None = None
        self._external = True
        self._frozen_cities: set[str] = set()
        self._audit: list[dict] = []

    # --- plumbing -------------------------------------------------------------

    def routes(self) -> list[Route]:
        ch = r"/channels/(?P<name>[^/]+)"
        return [
            ("GET", "/health", self.health),
            ("GET", "/version", self.version),
            ("POST", "/admin/deploy", self.deploy),
            ("GET", "/channels", self.list_channels),
            ("GET", ch, self.get_channel),
            ("POST", ch + "/stop", self.stop_channel),
            ("POST", ch + "/start", self.start_channel),
            ("GET", ch + "/probe", self.probe),
            ("POST", "/business", self.business),
            ("GET", "/notice", self.get_notice),
            ("PUT", "/notice", self.put_notice),
            ("DELETE", "/notice", self.delete_notice),
            ("GET", "/", self.portal),
            ("GET", "/admin/access", self.get_access),
            ("POST", "/admin/access", self.set_access),
            ("GET", "/admin/accounts", self.get_accounts),
            ("POST", "/admin/accounts/(?P<action>freeze|unfreeze)", self.freeze_accounts),
            ("POST", "/jobs/(?P<name>[^/]+)/run", self.run_job_route),
            ("GET", "/_audit", lambda _r: Response(200, self.audit())),
            ("GET", "/_faults", self.get_faults),
            ("POST", "/_faults", self.add_fault),
            ("DELETE", "/_faults/(?P<name>.+)", self.clear_fault),
        ]

    def record(self, request: Request, response: Response) -> None:
        """Audit every admin call: any write except business traffic (`/business`) and
        the test-only `/_` routes, so a test can prove what a step did, and did not do."""
        if request.method in ("GET", "HEAD") or request.path.startswith(("/_", "/business")):
            return
        try:
            body = request.json()
        except ValueError:
            body = request.body.decode(errors="replace")
        entry = {
            "method": request.method,
            "path": request.path,
            "body": body,
            "status": response.status,
            "at": _now(),
        }
        with self._lock:
            self._audit.append(entry)

    def audit(self) -> list[dict]:
        with self._lock:
            return list(self._audit)

    def _channel(self, request: Request) -> str:
        name = request.params["name"]
        if name not in CHANNEL_NAMES:
            raise HttpError(404, f"{self.name}: no channel {name!r}")
        return name

    def _fault(self, name: str) -> bool:
        return self.faults.active(f"{self.name}:{name}")

    # --- health and version ---------------------------------------------------

    def health(self, _request: Request) -> Response:
        database, frozen = "ok", False
        try:
            conn = connect(self.db_path)
            try:
                conn.execute("SELECT count(*) FROM offices").fetchone()
                frozen = _frozen(conn)
            finally:
                conn.close()
        except sqlite3.Error:
            database = "error"
        core = self.channels.get("core")["state"]
        status = "ok"
        if core == "stopped":
            status = "down"
        elif self._fault("health-fail") or database != "ok":
            status = "degraded"
        body = {
            "system": self.name,
            "status": status,
            "version": self._version["version"],
            "database": database,
            "core": core,
            "frozen": frozen,
        }
        return Response(200 if status == "ok" else 503, body)

    def version(self, _request: Request) -> Response:
        with self._lock:
            return Response(200, dict(self._version))

    def deploy(self, request: Request) -> Response:
        version = str(request.json()["version"])
        with self._lock:
            self._version = {"version": version, "deployed_at": _now()}
            return Response(200, dict(self._version))

    # --- channels ---------------------------------------------------------------

    def list_channels(self, _request: Request) -> Response:
        return Response(200, {"channels": self.channels.all()})

    def get_channel(self, request: Request) -> Response:
        return Response(200, self.channels.get(self._channel(request)))

    @staticmethod
    def _business(request: Request) -> list[str] | None:
        business = request.json().get("business")
        if business is None:
            return None
        unknown = [b for b in business if b not in KINDS]
        if unknown:
            raise HttpError(400, f"unknown business kind(s) {unknown}; known: {list(KINDS)}")
        return list(business)

    def stop_channel(self, request: Request) -> Response:
        name = self._channel(request)
        business = self._business(request)
        if self._fault(f"refuse-stop:{name}"):
            raise HttpError(409, f"{self.name}: channel {name} refused to stop (fault)")
        return Response(200, self.channels.stop(name, business))

    def start_channel(self, request: Request) -> Response:
        name = self._channel(request)
        channel = self.channels.start(name, self._business(request))
        if GROUP_OF[name] == "jobs":
            # Restoring a job channel runs the job once, as the 20:00 restore expects.
            try:
                self.run_job(name)
            except HttpError:
                pass  # a job that cannot run now shows as missing job_output
        return Response(200, channel)

    def probe(self, request: Request) -> Response:
        name = self._channel(request)
        if not (self.channels.running("core") and self.channels.running(name)):
            raise HttpError(503, f"{self.name}: channel {name} is stopped")
        conn = connect(self.db_path)
        try:
            conn.execute("SELECT count(*) FROM persons").fetchone()
        finally:
            conn.close()
        return Response(200, {"ok": True, "channel": name})

    # --- business -----------------------------------------------------------------

    def _write(self, table: str, sql: str, args: tuple) -> int:
        """Run one INSERT; a freeze trigger's abort becomes 423 Locked."""
        conn = connect(self.db_path)
        try:
            return conn.execute(sql, args).lastrowid or 0
        except sqlite3.DatabaseError as exc:
            if _frozen(conn, table):
                raise HttpError(423, f"{self.name}: database is frozen ({exc})") from exc
            raise
        finally:
            conn.close()

    def business(self, request: Request) -> Response:
        body = request.json()
        channel, kind, person = body["channel"], body["kind"], int(body["person_id"])
        if channel not in CHANNEL_NAMES:
            raise HttpError(404, f"{self.name}: no channel {channel!r}")
        if kind not in KINDS:
            raise HttpError(400, f"unknown business kind {kind!r}; known: {list(KINDS)}")
        if not self.channels.serves("core", kind):
            raise HttpError(503, f"{self.name}: core is stopped")
        if not self.channels.serves(channel, kind):
            raise HttpError(503, f"{self.name}: channel {channel} is stopped for {kind}")
        row_id = self._write(
            "transactions",
            "INSERT INTO transactions (channel, kind, person_id, status, created_at)"
            " VALUES (?, ?, ?, 'done', ?)",
            (channel, kind, person, _now()),
        )
        return Response(201, {"id": row_id, "channel": channel, "kind": kind, "status": "done"})

    def run_job(self, name: str) -> dict:
        if GROUP_OF.get(name) != "jobs":
            raise HttpError(404, f"{self.name}: no job {name!r}")
        if not (self.channels.running("core") and self.channels.running(name)):
            raise HttpError(503, f"{self.name}: job channel {name} is stopped")
        conn = connect(self.db_path)
        try:
            rows = conn.execute(_JOB_QUERIES[name]).fetchone()[0]
        finally:
            conn.close()
        run_at = _now()
        self._write(
            "job_output",
            "INSERT INTO job_output (job, run_at, rows) VALUES (?, ?, ?)",
            (name, run_at, rows),
        )
        return {"job": name, "run_at": run_at, "rows": rows}

    def run_job_route(self, request: Request) -> Response:
        return Response(201, self.run_job(request.params["name"]))

    # --- notice and portal ---------------------------------------------------------

    def _notice_body(self) -> dict:
        with self._lock:
            notice = self._notice
        if notice is None:
            return {"active": False, "text": None, "until": None, "published_at": None}
        return {"active": True, **notice}

    def get_notice(self, _request: Request) -> Response:
        """404 when no notice is published: the notice is a resource that comes and goes."""
        body = self._notice_body()
        return Response(200 if body["active"] else 404, body)

    def put_notice(self, request: Request) -> Response:
        body = request.json()
        text = str(body["text"])
        until = body.get("until")
        with self._lock:
            self._notice = {"text": text, "until": until, "published_at": _now()}
        return Response(200, self._notice_body())

    def delete_notice(self, _request: Request) -> Response:
        with self._lock:
            self._notice = None
        return Response(200, self._notice_body())

    def portal(self, _request: Request) -> Response:
        notice = self._notice_body()
        banner = f"<p class='notice'>{escape(notice['text'])}</p>" if notice["active"] else ""
        if not (self.channels.running("core") and self.channels.running("online-hall")):
            page = f"<html><body><h1>Under maintenance</h1>{banner}</body></html>"
            return Response(503, page, "text/html")
        page = f"<html><body><h1>Online Service Hall ({self.name})</h1>{banner}</body></html>"
        return Response(200, page, "text/html")

    # --- access and accounts ----------------------------------------------------------

    def get_access(self, _request: Request) -> Response:
        with self._lock:
            return Response(200, {"external": self._external})

    def set_access(self, request: Request) -> Response:
        external = request.json()["external"]
        if not isinstance(external, bool):
            raise HttpError(400, "external must be true or false")
        with self._lock:
            self._external = external
            return Response(200, {"external": self._external})

    def _accounts(self) -> dict:
        with self._lock:
            frozen = set(self._frozen_cities)
        return {
            "accounts": [
                {"city": c, "users": ACCOUNTS_PER_CITY, "frozen": c in frozen} for c in CITIES
            ]
        }

    def get_accounts(self, _request: Request) -> Response:
        return Response(200, self._accounts())

    def freeze_accounts(self, request: Request) -> Response:
        city = request.json()["city"]
        if city != "all" and city not in CITIES:
            raise HttpError(404, f"no city {city!r}; known: all, {', '.join(CITIES)}")
        cities = set(CITIES) if city == "all" else {city}
        with self._lock:
            if request.params["action"] == "freeze":
                self._frozen_cities |= cities
            else:
                self._frozen_cities -= cities
        return Response(200, self._accounts())

    # --- faults ----------------------------------------------------------------------

    def get_faults(self, _request: Request) -> Response:
        return Response(200, {"faults": self.faults.names()})

    def add_fault(self, request: Request) -> Response:
        try:
            self.faults.add(qualify(str(request.json()["name"]), self.name))
        except sqlite3.DatabaseError as exc:
            raise HttpError(423, f"cannot bend the data: {exc}") from exc
        return Response(200, {"faults": self.faults.names()})

    def clear_fault(self, request: Request) -> Response:
        try:
            self.faults.discard(qualify(request.params["name"], self.name))
        except sqlite3.DatabaseError as exc:
            raise HttpError(423, f"cannot restore the data: {exc}") from exc
        return Response(200, {"faults": self.faults.names()})


class HubService:
    """The notification hub: what was sent to whom, for checks and the report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[dict] = []

    def routes(self) -> list[Route]:
        return [
            ("POST", "/notify", self.notify),
            ("GET", "/notify", self.messages),
            ("GET", "/health", lambda _r: Response(200, {"system": "hub", "status": "ok"})),
        ]

    def notify(self, request: Request) -> Response:
        body = request.json()
        key = body.get("id")
        if key is not None:
            # A sender's retry after a lost answer must not notify people twice.
            with self._lock:
                for sent in self._messages:
                    if sent.get("idempotency_key") == str(key):
                        return Response(200, sent)
        to = body["to"]
        message = {
            "idempotency_key": None if key is None else str(key),
            "to": [to] if isinstance(to, str) else list(to),
            "subject": str(body["subject"]),
            "body": str(body.get("body", "")),
            "channel": str(body.get("channel", "im")),
            "at": _now(),
        }
        with self._lock:
            message["id"] = len(self._messages) + 1
            self._messages.append(message)
        return Response(202, message)

    def sent(self) -> list[dict]:
        with self._lock:
            return list(self._messages)

    def messages(self, _request: Request) -> Response:
        with self._lock:
            return Response(200, list(self._messages))
