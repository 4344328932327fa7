"""Errors that cross the runtime/domain boundary."""


class Rejected(Exception):
    """A command that cannot be carried out; becomes a `CommandRejected` event and changes nothing."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


class TransientError(Exception):
    """Worth retrying as it is (an unreachable dependency); never dead-lettered for it."""


class IsolationNeeded(Exception):
    """A command was rejected in a batch handled without a savepoint per message, or a write left for later did not
    answer as its handler took for granted (driver_sql.write_later): its writes cannot be undone alone, so the
    whole transaction is rolled back and the batch handled again, one savepoint per message."""
