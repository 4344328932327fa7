"""A contract's statement: for each milestone and bonus, what was funded, released, refunded, and of what was
released what is still pending and what is available, with the dates. Pure: built from the money movements
escrow reported (its events), so it says what the ledger says.

    funded = released + refunded + in_escrow        released = pending + available
    the client paid (charged) = the sum of `funded` over every item (milestones' deposits and bonuses)
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

FUNDED, RELEASED, REFUNDED, AVAILABLE = "funded", "released", "refunded", "available"
MOVEMENTS = (FUNDED, RELEASED, REFUNDED, AVAILABLE)


@dataclass(frozen=True)
class Movement:
    """One money movement of a contract's item, as escrow's ledger made it."""

    entry_id: str  # the escrow event's ledger transaction and the item: unique, so a replay adds nothing
    item_kind: str  # milestone | bonus
    item_id: str
    kind: str  # funded | released | refunded | available
    amount: int
    at: datetime
    available_at: datetime | None = None  # released: the end of its security period


@dataclass
class Line:
    item_kind: str
    item_id: str
    title: str
    amount: int  # the milestone's or bonus's own amount
    funded: int = 0
    released: int = 0
    refunded: int = 0
    available: int = 0
    funded_at: datetime | None = None
    released_at: datetime | None = None
    refunded_at: datetime | None = None
    available_at: datetime | None = None  # when the last release became (or becomes) available

    @property
    def pending(self) -> int:
        return self.released - self.available

    @property
    def in_escrow(self) -> int:
        return self.funded - self.released - self.refunded

    def add(self, m: Movement) -> None:
        setattr(self, m.kind, getattr(self, m.kind) + m.amount)
        at_field = f"{m.kind}_at"
        if m.kind != AVAILABLE:
            setattr(self, at_field, max(filter(None, (getattr(self, at_field), m.at))))
        if m.available_at and m.kind == RELEASED:
            self.available_at = max(filter(None, (self.available_at, m.available_at)))


@dataclass
class Statement:
    contract_id: str
    currency: str
    lines: list[Line] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        names = ("funded", "released", "refunded", "in_escrow", "pending", "available")
        return {n: sum(getattr(line, n) for line in self.lines) for n in names}


def build(contract_id: str, currency: str, milestones: Iterable[tuple[str, str, int]],
          bonuses: Iterable[tuple[str, str, int]], movements: Iterable[Movement]) -> Statement:
    """milestones and bonuses: (id, title, amount) in the contract's order; movements in any order."""
    lines = {("milestone", i): Line("milestone", i, t, a) for i, t, a in milestones}
    lines.update({("bonus", i): Line("bonus", i, t, a) for i, t, a in bonuses})
    for m in sorted(movements, key=lambda m: (m.at, m.entry_id)):
        line = lines.get((m.item_kind, m.item_id))
        if line is None:  # a removed milestone never moves money; anything else would be a bug to show
            line = lines[(m.item_kind, m.item_id)] = Line(m.item_kind, m.item_id, "", 0)
        line.add(m)
    return Statement(contract_id, currency, list(lines.values()))
