"""Shared HTTP client for the step families that talk to a system's admin API.

`api(ctx, target)` opens one httpx client on the target's `http` (or `notify`)
endpoint. It is the one boundary where httpx exceptions become ours:
a transport failure is a `ConnectError`, anything else httpx raises is a
`StepError`; both keep the httpx exception as `__cause__`.
"""

from __future__ import annotations

import json as jsonlib
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import httpx

from cutover.errors import ConnectError, StepError
from cutover.profile import HttpEndpoint
from cutover.steps import StepContext

# Evidence is kept small: bodies are cut to this many characters.
BODY_LIMIT = 2048

Facet = Literal["http", "notify"]


def truncate(text: str, limit: int = BODY_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def body_of(response: httpx.Response) -> Any:
    """The response body for evidence: parsed JSON when small, else truncated text."""
    text = response.text
    if len(text) <= BODY_LIMIT:
        try:
            return response.json()
        except ValueError:
            return text
    return truncate(text)


class Api:
    """One target's HTTP API; every request goes through `request`."""

    def __init__(self, client: httpx.Client, target: str) -> None:
        self.client = client
        self.target = target

    def request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        where = f"{method.upper()} {path} on {self.target}"
        try:
            if json is None:
                return self.client.request(method.upper(), path)
            return self.client.request(method.upper(), path, json=json)
        except httpx.TransportError as exc:
            raise ConnectError(f"{where}: cannot reach {self.client.base_url} ({exc})") from exc
        except httpx.HTTPError as exc:
            raise StepError(f"{where}: {exc}") from exc

    def expect(
        self, method: str, path: str, json: Any = None, status: Iterable[int] = (200,)
    ) -> httpx.Response:
        """A request whose status must be one of `status`; otherwise a StepError."""
        response = self.request(method, path, json)
        wanted = list(status)
        if response.status_code not in wanted:
            raise StepError(
                f"{method.upper()} {path} on {self.target} answered {response.status_code}, "
                f"expected {', '.join(map(str, wanted))}",
                evidence=response_evidence(response),
            )
        return response

    def get_json(self, path: str) -> Any:
        response = self.expect("GET", path)
        try:
            return response.json()
        except ValueError as exc:
            raise StepError(
                f"GET {path} on {self.target} did not answer JSON",
                evidence=response_evidence(response),
            ) from exc


def response_evidence(response: httpx.Response) -> dict[str, Any]:
    return {
        "method": response.request.method,
        "url": str(response.request.url),
        "status": response.status_code,
        "body": body_of(response),
    }


def endpoint(ctx: StepContext, target: str, facet: Facet = "http") -> HttpEndpoint:
    found = getattr(ctx.target(target), facet)
    if found is None:
        raise StepError(f"target {target!r} has no {facet} endpoint in the profile")
    return found


@contextmanager
def api(
    ctx: StepContext,
    target: str,
    facet: Facet = "http",
    headers: dict[str, str] | None = None,
) -> Iterator[Api]:
    """An `Api` on `target`'s `facet` endpoint, with its bearer token when one is set."""
    ep = endpoint(ctx, target, facet)
    all_headers = dict(headers or {})
    try:
        token = ctx.secret(ep.token)
    except KeyError as exc:  # SecretRef says which variable or file is missing
        raise StepError(f"{target}: {exc.args[0]}") from exc
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    # httpx 0.28 deprecates a CA bundle path for `verify`; it wants an SSL context.
    verify = (
        ssl.create_default_context(cafile=ep.verify) if isinstance(ep.verify, str) else ep.verify
    )
    with httpx.Client(
        base_url=ep.url, timeout=ep.timeout, verify=verify, headers=all_headers
    ) as client:
        yield Api(client, target)


def subset_mismatch(expected: Any, observed: Any, where: str = "$") -> str | None:
    """Where `observed` fails to contain `expected`, or None when it does.

    Dicts match when every expected key matches (extra keys are fine); lists
    match item by item and must have the same length; anything else by equality.
    """
    if isinstance(expected, dict):
        if not isinstance(observed, dict):
            return f"{where} is {jsonlib.dumps(observed)[:80]}, expected an object"
        for key, value in expected.items():
            if key not in observed:
                return f"{where}.{key} is missing"
            found = subset_mismatch(value, observed[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(observed, list) or len(observed) != len(expected):
            return f"{where} is {jsonlib.dumps(observed)[:80]}, expected {len(expected)} items"
        for i, (want, got) in enumerate(zip(expected, observed, strict=True)):
            found = subset_mismatch(want, got, f"{where}[{i}]")
            if found:
                return found
        return None
    if expected != observed:
        return f"{where} is {jsonlib.dumps(observed)[:80]}, expected {jsonlib.dumps(expected)}"
    return None
