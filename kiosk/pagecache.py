"""A small in-process cache of the kiosk's rendered home page.

The home page is the idle screen every kiosk polls and every passer-by taps; rendering it from
the database each time costs ~20 ms at a busy station. A rendered page is kept per (locale, text
size, filter, partial, minute) and dropped whenever this process commits a write, with a short
time-to-live for writes made by other processes (the CLI). The CSRF token is per visitor, so it
is left as a placeholder in the cached page and filled in on every request.
"""

import threading
import time

from sqlalchemy import event
from sqlalchemy.orm import Session

CSRF_PLACEHOLDER = "\x00csrf-token\x00"


class PageCache:
    def __init__(self, ttl: float = 5.0, size: int = 128):
        self.ttl, self.size = ttl, size
        self.version = 0
        self._pages: dict = {}
        self._lock = threading.Lock()

    def get(self, key):
        entry = self._pages.get(key)
        if entry and entry[0] == self.version and time.monotonic() - entry[1] < self.ttl:
            return entry[2]
        return None

    def put(self, key, page) -> None:
        with self._lock:
            if len(self._pages) >= self.size:
                self._pages.clear()
            self._pages[key] = (self.version, time.monotonic(), page)

    def invalidate(self) -> None:
        with self._lock:
            self.version += 1
            self._pages.clear()


cache = PageCache()


@event.listens_for(Session, "after_flush")
def _mark_written(session, flush_context):
    session.info["wrote"] = True


@event.listens_for(Session, "do_orm_execute")
def _mark_dml(state):
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info["wrote"] = True


@event.listens_for(Session, "after_commit")
def _invalidate(session):
    if session.info.pop("wrote", False):
        cache.invalidate()


@event.listens_for(Session, "after_rollback")
def _forget(session):
    session.info.pop("wrote", None)
