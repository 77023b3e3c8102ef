"""The one redaction of secrets from text an operator, a journal or a report will keep.

A swarm's secrets have fixed shapes: a join token is ``SWMTKN-1-<key digest>-<secret>``,
the unlock key of an autolocked swarm ``SWMKEY-1-<base64>``. Every error message, the
operation journal and the rebuild report (kept for months as a CI artifact) pass through
``redact``, so a secret that slipped into some command's output or an error text is
replaced by a marker that names what was there, and never the value.
"""

from __future__ import annotations

import re

JOIN_TOKEN_MARKER = "<join token redacted>"
UNLOCK_KEY_MARKER = "<unlock key redacted>"

# Any version, so a future format is covered too: the prefix and everything token-like after
# it, even nothing (output cut off after the prefix). An unlock key is base64
# (RawStdEncoding: + and /, no padding; = allowed all the same).
_JOIN_TOKEN = re.compile(r"SWMTKN-[A-Za-z0-9-]*")
_UNLOCK_KEY = re.compile(r"SWMKEY-[A-Za-z0-9+/=-]*")


def redact(text: str) -> str:
    """``text`` with every join token and unlock key replaced by a marker."""
    return _UNLOCK_KEY.sub(UNLOCK_KEY_MARKER, _JOIN_TOKEN.sub(JOIN_TOKEN_MARKER, text))
