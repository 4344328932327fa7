"""What the notifications handler works with: its repository, the templates and how long an email waits for names."""

from dataclasses import dataclass, field
from datetime import timedelta

from platform_runtime.context import HandlerContext

from ..adapters.projection import BATCH_KEY
from ..adapters.repository import NotificationRepository
from ..adapters.templates import Templates


@dataclass
class Context(HandlerContext):
    templates: Templates = field(kw_only=True)
    names_wait: timedelta = field(kw_only=True)  # settings.names_wait: how long an email waits for its names
    notifications: NotificationRepository = field(init=False)

    def __post_init__(self) -> None:
        self.notifications = NotificationRepository(self.uow.session, self.uow.batch.get(BATCH_KEY))
