"""The swarm's unlock key (autolock), as values that never show themselves, and the seam of
the secret store that alone keeps it on this side of the swarm.

A store holds the current key and, for a few minutes after a rotation, the one before it:
Docker's advice ("keep a record of the old key around for a few minutes, so that if a
manager goes down before it gets the new key, it may still be unlocked with the old one").
The stored text is JSON; nothing but the store ever holds it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Protocol

from swarmforge.errors import SwarmError

#: ``docker swarm unlock-key -q``'s answer: the version, then base64 (+ and /, maybe =).
KEY_SHAPE = re.compile(r"SWMKEY-1-[A-Za-z0-9+/=]+")


class UnlockKey:
    """One unlock key; never shown by repr or str, so it cannot reach a log by accident."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not KEY_SHAPE.fullmatch(value):  # the message names no part of what it got
            raise SwarmError("what was read is not a swarm unlock key")
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnlockKey) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return "UnlockKey(<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True)
class UnlockKeys:
    """What a store holds: the current key, and the previous one while a rotation settles."""

    current: UnlockKey
    previous: UnlockKey | None = None
    rotated_at: float | None = None  # time.time() of the rotation that made ``previous`` old

    def candidates(self) -> list[UnlockKey]:
        """The keys to try on a locked manager, the current one first."""
        return [self.current] + ([self.previous] if self.previous else [])

    def to_text(self) -> str:
        return json.dumps({"current": self.current.value,
                           "previous": self.previous.value if self.previous else None,
                           "rotated_at": self.rotated_at})

    @classmethod
    def from_text(cls, text: str, where: str) -> UnlockKeys:
        """The keys as ``to_text`` wrote them; SwarmError naming ``where`` (never the text)."""
        try:
            held = json.loads(text)
            previous = held.get("previous")
            return cls(UnlockKey(held["current"]), UnlockKey(previous) if previous else None,
                       held.get("rotated_at"))
        except (ValueError, KeyError, AttributeError, TypeError, SwarmError):
            raise SwarmError(f"{where} does not hold unlock keys as swarmforge writes them; "
                             "`invoke unlock-key` stores the swarm's key anew") from None


class UnlockKeyStore(Protocol):
    """Where a cluster's unlock key lives, and only there (Target.unlock_key_store)."""

    @property
    def where(self) -> str:
        """The store as an operator finds it (a path, a parameter name): never the key."""

    def get(self) -> UnlockKeys | None:
        """The keys held; None when the store holds none."""

    def put(self, keys: UnlockKeys) -> None:
        """Hold ``keys`` instead of whatever it held."""

    def delete(self) -> None:
        """Hold nothing (no error if it held nothing)."""
