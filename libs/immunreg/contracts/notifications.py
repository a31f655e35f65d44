"""notifications.events.v1: what the notifications service tells others.

Only `HolderKeyOffered`, one stream per citizen (`holder-key-<citizen_id>`): the public
key registration wraps the citizen's data key to, so that notifications can open the
contacts it sends to (see `immunreg.contracts.common.HolderKeyOffered`).
"""

from __future__ import annotations

from immunreg.contracts.common import HolderKeyOffered
from immunreg.contracts.envelope import Context

CONTEXT = Context("notifications", [HolderKeyOffered])
