"""The simulator's listening socket, which a refusing outage closes and reopens on the same port.

Refusal has to happen in the kernel for the caller to see ``ECONNREFUSED``: once a connection
is accepted, the most a server can do is close it. So while refusing, the listening socket is
closed (new connections are refused) and every open connection is closed too (a pooled
keep-alive connection dies as it would when FBR goes down); accepting again binds a new socket to
the same port (``SO_REUSEADDR``, so connections in ``TIME_WAIT`` do not stop it).
"""

from __future__ import annotations

import asyncio

from aiohttp import web


class Listener:
    """Serves an aiohttp application on one TCP port that can be closed and reopened."""

    def __init__(self, application: web.Application) -> None:
        """Prepare to serve ``application``; nothing listens until :meth:`open`."""
        self._application = application
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._host = ""
        self._port = 0
        self._lock = asyncio.Lock()

    @property
    def refusing(self) -> bool:
        """Whether the server runs but its port refuses connections."""
        return self._runner is not None and self._site is None

    async def open(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (0: any free port); returns the address bound."""
        self._runner = web.AppRunner(self._application, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port)
        await self._site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self._host, self._port = host, bound_port  # reopen on the port actually bound
        return str(bound_host), int(bound_port)

    async def refuse(self) -> None:
        """Close the listening socket and every open connection (no-op if already refusing)."""
        async with self._lock:
            if self._runner is None or self._site is None:
                return
            site, self._site = self._site, None
            await site.stop()
            server = self._runner.server
            for connection in list(server.connections if server is not None else ()):
                connection.force_close()

    async def accept(self) -> None:
        """Listen again on the same port (no-op if already listening)."""
        async with self._lock:
            if self._runner is None or self._site is not None:
                return
            site = web.TCPSite(self._runner, self._host, self._port)
            await site.start()
            self._site = site

    async def close(self) -> None:
        """Stop serving altogether."""
        async with self._lock:
            if self._runner is not None:
                await self._runner.cleanup()
            self._runner = None
            self._site = None
