"""What the notifications handler works with: its repository and the templates."""

from dataclasses import dataclass, field

from platform_runtime.context import HandlerContext

from ..adapters.repository import NotificationRepository
from ..adapters.templates import Templates


@dataclass
class Context(HandlerContext):
    templates: Templates = field(kw_only=True)
    notifications: NotificationRepository = field(init=False)

    def __post_init__(self) -> None:
        self.notifications = NotificationRepository(self.uow.session)
