"""The simulator's own endpoints under ``/__sim``: what it issued, and steering it at runtime.

For tests and the demo that run the simulator as a separate process. None is subject to faults
or needs a token (the simulator only ever listens for tests), but a refusing outage closes the
port, so they are unreachable during one.

- ``GET /__sim/stats``: :meth:`FbrSimulator.summary` as JSON; ``?per_key=1`` adds the count
  under every ``X-Hub-Invoice-Id``; ``?key=ID`` (repeatable) adds just those in ``issued``.
- ``POST /__sim/script``: queue steps, a JSON list of fault names, nulls (a normal request) or
  ``{"fault": ..., "latency_ms": ...}``; 400 on an unknown fault.
- ``PUT /__sim/tokens/{token}``: add or replace a token, body
  ``{"seller": NTN, "environment": "sandbox", "expires_at": ISO time or null}``.
- ``DELETE /__sim/tokens/{token}``: revoke a token (it gets WSO2's 401 from then on).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from clients.fbr_simulator.schedule import parse_step_json

if TYPE_CHECKING:
    from clients.fbr_simulator.app import FbrSimulator

PREFIX = "/__sim"


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json")


def add_routes(app: web.Application, simulator: FbrSimulator) -> None:
    """Register the ``/__sim`` endpoints of ``simulator`` on ``app``."""

    async def stats(request: web.Request) -> web.Response:
        report = simulator.summary(per_key=request.query.get("per_key") in {"1", "true"})
        keys = request.query.getall("key", [])
        if keys:
            report["issued_for"] = {key: simulator.issued_count(key) for key in keys}
        return _json(report)

    async def script(request: web.Request) -> web.Response:
        try:
            steps = orjson.loads(await request.read())
            if not isinstance(steps, list):
                raise ValueError("expected a JSON list of steps")
            parsed = [parse_step_json(step) for step in steps]
        except (ValueError, TypeError, KeyError) as error:
            return _json({"error": str(error)}, status=400)
        simulator.script(*parsed)
        return _json({"queued": len(parsed)})

    async def put_token(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            expires = body.get("expires_at")
            simulator.tokens.add(
                request.match_info["token"],
                str(body["seller"]),
                str(body.get("environment", "sandbox")),
                expires_at=None if expires is None else datetime.datetime.fromisoformat(expires),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            return _json({"error": f"bad token grant: {error}"}, status=400)
        return _json({"token": request.match_info["token"]})

    async def delete_token(request: web.Request) -> web.Response:
        simulator.tokens.revoke(request.match_info["token"])
        return _json({"revoked": request.match_info["token"]})

    app.router.add_get(f"{PREFIX}/stats", stats)
    app.router.add_post(f"{PREFIX}/script", script)
    app.router.add_put(f"{PREFIX}/tokens/{{token}}", put_token)
    app.router.add_delete(f"{PREFIX}/tokens/{{token}}", delete_token)
