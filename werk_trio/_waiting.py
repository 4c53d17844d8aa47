"""Waiting for jobs to finish: one shared LISTEN on the app's "done" channel.

The completer (and the sweeper) NOTIFY the done channel with the ids of jobs
that reached a terminal status, comma-joined (or ``*`` when too many for one
payload). :class:`DoneWatcher` runs one :class:`~werk_trio.db.Listener` per
app, started on the first wait as a Trio system task, and wakes the waiters
of those ids. Waiters also re-check the database every ``poll_interval``
seconds, so a lost notification (a reconnect, PgBouncer without LISTEN) only
costs latency.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import TYPE_CHECKING, Any

import trio

from .db import RECONNECTED, Listener

if TYPE_CHECKING:
    from .app import Werk

logger = logging.getLogger("werk_trio")

__all__ = ["DoneWatcher"]


class DoneWatcher:
    def __init__(self, app: Werk) -> None:
        self.app = app
        self._waiters: dict[uuid.UUID, list[trio.Event]] = {}
        self._everyone: list[trio.Event] = []
        self._scope: trio.CancelScope | None = None
        self._ready: trio.Event | None = None
        self._token: Any = None

    def register(self, job_ids: list[uuid.UUID]) -> trio.Event:
        """One event, set when any of ``job_ids`` is reported finished."""
        event = trio.Event()
        for job_id in job_ids:
            self._waiters.setdefault(job_id, []).append(event)
        self._everyone.append(event)
        return event

    def unregister(self, job_ids: list[uuid.UUID], event: trio.Event) -> None:
        for job_id in job_ids:
            events = self._waiters.get(job_id)
            if events is not None:
                if event in events:
                    events.remove(event)
                if not events:
                    del self._waiters[job_id]
        if event in self._everyone:
            self._everyone.remove(event)

    async def ensure_started(self) -> None:
        """Start the shared listener (once per app and Trio run); wait until it listens."""
        if not self.app.config.use_listen_notify:
            return
        token = trio.lowlevel.current_trio_token()
        if self._ready is not None and self._token is token:
            await self._ready.wait()
            return
        self._token = token
        self._ready = trio.Event()
        trio.lowlevel.spawn_system_task(self._run, self._ready, name="werk_trio done-listener")
        with trio.move_on_after(10):
            await self._ready.wait()

    def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
        self._scope = None
        self._ready = None
        self._token = None

    async def _run(self, ready: trio.Event) -> None:
        send, recv = trio.open_memory_channel[Any](math.inf)
        listener = Listener(self.app.dsn, [self.app.sql.done_channel], send)
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(listener.run)
                    ready.set()
                    async for note in recv:
                        self._dispatch(note)
            except Exception:
                logger.exception("the done-listener stopped; waits fall back to polling")
            finally:
                ready.set()
                if self._scope is scope:
                    self._scope = None
                    self._ready = None

    def _dispatch(self, note: Any) -> None:
        if note is RECONNECTED or note.payload == "*":
            for event in self._everyone:
                event.set()
            return
        for text in note.payload.split(","):
            try:
                job_id = uuid.UUID(text)
            except ValueError:
                continue
            for event in self._waiters.get(job_id, ()):
                event.set()
