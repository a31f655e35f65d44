"""notifications.events.v1: what the notifications service tells others.

`HolderKeyOffered`, one stream per citizen (`holder-key-<citizen_id>`): the public
key registration wraps the citizen's data key to, so that notifications can open the
contacts it sends to (see `immunreg.contracts.common.HolderKeyOffered`); and
`HolderKeysPooled`, one stream per batch (`holder-key-pool-notifications-<id>`): keys
made for no citizen yet, which registration wraps a new citizen's data key to.
"""

from __future__ import annotations

from immunreg.contracts.common import HolderKeyOffered, HolderKeysPooled
from immunreg.contracts.envelope import Context

CONTEXT = Context("notifications", [HolderKeyOffered, HolderKeysPooled])
