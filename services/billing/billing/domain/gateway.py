"""The payment-gateway port: what billing needs from a card network, whatever the adapter."""

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class GatewayCharge:
    reference: str
    amount: int
    currency: str


class Declined(Exception):
    """The network said no; retrying will not change that."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


class GatewayUnavailable(Exception):
    """A transient failure or a timeout: the outcome is unknown, retry with the same idempotency key."""


class PaymentGateway(Protocol):
    async def charge(self, idempotency_key: str, token: str, amount: int, currency: str) -> GatewayCharge: ...

    async def refund(self, idempotency_key: str, charge_reference: str, amount: int) -> str: ...

    async def void(self, idempotency_key: str) -> str:
        """Nothing stays charged under the key, and nothing will be: the voided charge's reference, or ""."""
        ...
