"""Ids for facts: UUIDv7, time-ordered, minted where the intent is created (DESIGN.md §2)."""

import uuid

from uuid6 import uuid7


def new_id() -> str:
    return str(uuid7())


def parse_id(value: str) -> str | None:
    """The canonical form of a UUID typed or scanned by someone, or None if it is not one."""
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        return None
