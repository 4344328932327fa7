"""What every escrow handler works with: the unit of work, the ledger's repositories, the security period."""

from dataclasses import dataclass, field
from datetime import timedelta

from platform_runtime.context import HandlerContext
from platform_schemas import Message
from platform_schemas.topics import ESCROW_EVENTS

from ..adapters.earnings_repository import EarningsRepository
from ..adapters.ledger_repository import LedgerRepository


@dataclass
class Context(HandlerContext):
    # The earnings security period: a release or bonus is pending this long, then available.
    pending_for: timedelta = field(kw_only=True)
    ledger: LedgerRepository = field(init=False)
    earnings: EarningsRepository = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = LedgerRepository(self.uow.session)
        self.earnings = EarningsRepository(self.uow.session)

    def event(self, data: Message, subject: str) -> None:
        self.uow.publish(ESCROW_EVENTS, data, subject=subject)
