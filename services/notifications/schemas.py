"""What the notifications API accepts and answers (the OpenAPI document is built from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

MessageStatus = Literal["pending", "sending", "sent", "dropped", "dead_lettered"]


class MessagePreferences(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Whether the person wants messages (safety notices, such as a recall, come anyway)."""

    opted_out: bool


class MessagePreferencesView(msgspec.Struct, frozen=True, kw_only=True):
    """The person's choice as stored."""

    citizen_id: str
    opted_out: bool


class MessageView(msgspec.Struct, frozen=True, kw_only=True):
    """A message: what, how and when; never its text or the address it went to."""

    message_id: str
    citizen_id: str
    kind: str
    status: MessageStatus
    channel: str | None
    attempts: int
    due_at: datetime
    sent_at: datetime | None
    last_error: str | None


class MessageList(msgspec.Struct, frozen=True):
    """Messages, oldest first."""

    items: list[MessageView]


class MessageQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filter for the staff list."""

    status: MessageStatus | None = None
    citizen_id: str | None = None
    limit: int = 100


class Requeued(msgspec.Struct, frozen=True):
    """The message is in the queue again."""

    message_id: str
