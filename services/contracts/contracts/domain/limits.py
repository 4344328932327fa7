"""Money limits, settings of the contracts service (in minor units)."""

from dataclasses import dataclass

from platform_runtime.errors import Rejected


@dataclass(frozen=True)
class Limits:
    milestone_min: int = 500
    milestone_max: int = 100_000_000
    bonus_min: int = 100

    def check_milestone(self, amount: int) -> None:
        if not self.milestone_min <= amount <= self.milestone_max:
            raise Rejected("amount_out_of_range",
                           f"a milestone amount must be between {self.milestone_min} and {self.milestone_max} "
                           f"minor units, not {amount}")

    def check_bonus(self, amount: int) -> None:
        if amount < self.bonus_min:
            raise Rejected("amount_out_of_range", f"a bonus must be at least {self.bonus_min} minor units")
