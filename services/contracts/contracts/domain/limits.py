"""Money and size limits, settings of the contracts service (amounts in minor units).

Every amount a caller sends is checked here before anything is written, so a sum the platform computes
(a contract's total, a client's bonuses of a day, billing's batch charge per client) stays far below
what a PostgreSQL bigint holds: 50 milestones of the maximum, or a year of a client's daily bonus cap,
are still below 2^53.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from platform_runtime.errors import Rejected


@dataclass(frozen=True)
class Limits:
    milestone_min: int = 500
    milestone_max: int = 100_000_000
    bonus_min: int = 100
    contract_max_total: int = 1_000_000_000
    bonus_max: int = 10_000_000
    bonus_max_per_client_per_day: int = 100_000_000

    def check_milestone(self, amount: int) -> None:
        if not self.milestone_min <= amount <= self.milestone_max:
            raise Rejected("amount_out_of_range",
                           f"a milestone amount must be between {self.milestone_min} and {self.milestone_max} "
                           f"minor units, not {amount}")

    def check_contract(self, amounts: Iterable[int]) -> None:
        """A contract's milestones (the live ones, with the one being added or changed) add up to at most the
        contract maximum. (Their number is capped by the contract itself: Contract.ensure_room_for_a_milestone.)"""
        amounts = list(amounts)
        if sum(amounts) > self.contract_max_total:
            raise Rejected("amount_out_of_range", f"a contract's milestones add up to at most "
                                                  f"{self.contract_max_total} minor units, not {sum(amounts)}")

    def check_bonus(self, amount: int, given_today: int = 0) -> None:
        """One bonus, and the client's bonuses of the same UTC day with it (summed by the database)."""
        if not self.bonus_min <= amount <= self.bonus_max:
            raise Rejected("amount_out_of_range",
                           f"a bonus must be between {self.bonus_min} and {self.bonus_max} minor units, not {amount}")
        if given_today + amount > self.bonus_max_per_client_per_day:
            raise Rejected("amount_out_of_range",
                           f"a client's bonuses of one day add up to at most {self.bonus_max_per_client_per_day} "
                           f"minor units; {given_today} were given today")
