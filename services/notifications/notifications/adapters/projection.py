"""What an event's notifications need to know (`Known`), and a fetched batch's projections read ahead once.

A batch's events each looked up their contract's parties, milestone title and people's names in a round trip of
their own, and each OfferSent saved its contract in one that also answered that lookup. Read ahead, one
statement reads what every event of the batch may look up (`BatchProjection`), the batch's own projections
(a contract, a milestone, a registration) are applied to it in the order they are handled, and each lookup is
answered from it as the database would answer it at that point of the batch: the saves are then writes left for
later, with nothing to wait for (issue 10, thirty-sixth step). An id the read did not ask for is never answered
from it (`covers`): the repository asks the database.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..domain.routing import Parties

# Where a batch's projection is kept for its handlers (`UnitOfWork.batch`).
BATCH_KEY = "notifications.ahead"


@dataclass(frozen=True)
class Known:
    """What the projection knows for one event: the contract's parties and the names of its accounts."""

    parties: Parties | None
    milestone_title: str | None
    names: Mapping[str, str]


@dataclass
class BatchProjection:
    """The contracts, milestones and names a batch asked for, as the database held them before the batch, then as
    the batch's projections left them. An id asked for and absent is absent from the database too."""

    contracts: dict[str, Parties]
    milestones: dict[str, str]  # milestone id -> title
    names: dict[str, str]  # account id -> name
    # The ids the read asked for, of each kind.
    asked_contracts: frozenset[str]
    asked_milestones: frozenset[str]
    asked_accounts: frozenset[str]

    def covers(self, contract_id: str | None, milestone_id: str | None, account_ids: Iterable[str]) -> bool:
        """Whether every id of a lookup was asked for, with the parties of its contract: then `known` answers it."""
        if contract_id is not None and contract_id not in self.asked_contracts:
            return False
        if milestone_id is not None and milestone_id not in self.asked_milestones:
            return False
        parties = self.contracts.get(contract_id) if contract_id is not None else None
        people = [*account_ids, *((parties.client_id, parties.freelancer_id) if parties else ())]
        return all(person in self.asked_accounts for person in people)

    def known(self, contract_id: str | None, milestone_id: str | None) -> Known:
        """The lookup's answer (repository `_LOOKUP`). Its names are every name the batch knows, a superset of the
        lookup's that the templates read by id; not a copy, so read at once (as the handler does)."""
        return Known(self.contracts.get(contract_id) if contract_id is not None else None,
                     self.milestones.get(milestone_id) if milestone_id is not None else None, self.names)

    def contract_saved(self, parties: Parties, milestones: dict[str, tuple[str, str, int]],
                       milestone_id: str | None) -> Known:
        """A contract's parties and milestones saved (repository `_SAVE_CONTRACT_AND_LOOKUP`): a title not given
        keeps the one saved before. Returns what that statement answers."""
        kept = self.contracts.get(parties.contract_id)
        if parties.title is None and kept is not None:
            parties = Parties(parties.contract_id, parties.client_id, parties.freelancer_id, parties.currency,
                              kept.title)
        self.contracts[parties.contract_id] = parties
        for milestone, title, _ in milestones.values():
            self.milestones[milestone] = title
        return self.known(parties.contract_id, milestone_id)

    def milestone_saved(self, milestone_id: str, title: str) -> None:
        self.milestones[milestone_id] = title

    def registered(self, account_id: str, name: str) -> None:
        self.names[account_id] = name
