"""Facts of notifications on `notifications.events`."""

from typing import Literal

from ..types import Event, Id

Channel = Literal["email", "in_app"]


class NotificationSent(Event):
    notification_id: str
    account_id: Id
    channel: Channel
    kind: str
    event_id: str
    contract_id: Id | None = None


class NotificationFailed(Event):
    notification_id: str
    account_id: Id
    channel: Channel
    kind: str
    event_id: str
    attempts: int
    error: str
