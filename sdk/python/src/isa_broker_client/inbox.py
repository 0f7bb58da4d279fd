"""The inbox as an async iterator: long-polling, with the cursor acknowledged for you.

An entry counts as processed when your loop asks for the next one. Before each new read the
stream acknowledges (``POST /v1/inbox/ack``) every entry processed so far, so a program that
stops between two entries reads again, after a restart, from the first entry it had not
finished: at least once, never lost. Store each entry idempotently (on ``delivery_id`` for a
message, on the event ``id`` for a notice), because the same one can come again.

    async for entry in client.inbox(wait=30):
        store_once(entry)          # raise to stop: this entry is not acknowledged

Leaving the loop with ``break`` acknowledges nothing more; call :meth:`InboxStream.ack` first
if the entry in hand is done.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from .models import InboxEntry, InboxPage


class InboxReader(Protocol):
    """What the stream needs of a client (``BrokerClient`` is one)."""

    async def read_inbox(
        self, *, after: int | None = None, limit: int = 100, wait: float = 0
    ) -> InboxPage: ...

    async def ack_inbox(self, cursor: int) -> tuple[int, int]: ...


class InboxStream:
    """Entries of your inbox, oldest first, read ``limit`` at a time, each read waiting up
    to ``wait`` seconds for an entry (the broker cuts a longer wait to its maximum, 30 s by
    default). Starts after ``after``, or after this client's acknowledged cursor.

    ``auto_ack``: acknowledge processed entries before each read (otherwise call
    :meth:`ack`). ``stop_when_empty``: end when a read finds nothing, instead of polling on
    (for a batch job that drains the inbox)."""

    def __init__(
        self,
        reader: InboxReader,
        *,
        after: int | None = None,
        limit: int = 100,
        wait: float = 30.0,
        auto_ack: bool = True,
        stop_when_empty: bool = False,
    ) -> None:
        self._reader = reader
        self._after = after
        self.limit = limit
        self.wait = wait
        self.auto_ack = auto_ack
        self.stop_when_empty = stop_when_empty
        self._buffer: deque[InboxEntry] = deque()
        self._in_hand: InboxEntry | None = None
        self._processed: int | None = None
        self._acknowledged: int | None = None

    def __aiter__(self) -> InboxStream:
        return self

    async def __anext__(self) -> InboxEntry:
        if self._in_hand is not None:  # asked for the next one: the last one is done
            self._processed = self._in_hand.cursor
            self._in_hand = None
        while not self._buffer:
            if self.auto_ack:
                await self.ack()
            page = await self._reader.read_inbox(
                after=self._after, limit=self.limit, wait=self.wait
            )
            if self._acknowledged is None:
                self._acknowledged = page.acknowledged
            self._after = page.next_cursor
            self._buffer.extend(page.entries)
            if not page.entries and self.stop_when_empty:
                raise StopAsyncIteration
        self._in_hand = self._buffer.popleft()
        return self._in_hand

    @property
    def cursor(self) -> int | None:
        """The last entry processed (or in hand, once :meth:`ack` is called)."""
        return self._processed

    @property
    def acknowledged(self) -> int | None:
        """This client's acknowledged cursor, as far as the stream knows."""
        return self._acknowledged

    async def ack(self) -> None:
        """Acknowledge every entry handed out so far, the one in hand included."""
        if self._in_hand is not None:
            self._processed = self._in_hand.cursor
        done = self._processed
        if done is None or (self._acknowledged is not None and done <= self._acknowledged):
            return
        _, self._acknowledged = await self._reader.ack_inbox(done)
