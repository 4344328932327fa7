"""An account's billing methods: one of them is primary, and every charge goes to the primary. Pure."""

from dataclasses import dataclass, field

from platform_runtime.errors import Rejected


@dataclass
class BillingMethod:
    billing_method_id: str
    kind: str
    token: str
    primary: bool = False


@dataclass
class BillingMethods:
    account_id: str
    methods: list[BillingMethod] = field(default_factory=list)

    def primary(self) -> BillingMethod | None:
        return next((m for m in self.methods if m.primary), None)

    def find(self, billing_method_id: str) -> BillingMethod:
        for method in self.methods:
            if method.billing_method_id == billing_method_id:
                return method
        raise Rejected("not_found", f"billing method {billing_method_id} is not one of {self.account_id}'s")

    def add(self, method: BillingMethod, make_primary: bool) -> None:
        # The first method becomes primary by itself: an account with methods always has a primary.
        if make_primary or not self.methods:
            self._make_primary(method)
        self.methods.append(method)

    def set_primary(self, billing_method_id: str) -> str | None:
        previous = self.primary()
        self._make_primary(self.find(billing_method_id))
        return previous.billing_method_id if previous else None

    def remove(self, billing_method_id: str) -> None:
        method = self.find(billing_method_id)
        if method.primary and len(self.methods) > 1:
            raise Rejected("invalid_state", "make another billing method primary before removing the primary one")
        self.methods.remove(method)

    def _make_primary(self, method: BillingMethod) -> None:
        for other in self.methods:
            other.primary = False
        method.primary = True
