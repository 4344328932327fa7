"""Which failed charges count towards a client's automatic suspension. Pure.

A client is suspended after a number of consecutive failed charges (contracts decides, from the streak
billing reports on each `ChargeFailed`). A charge refused because the client has no primary billing
method never reached a card and took nothing: it neither counts nor breaks the streak. A declined
bonus charge counts like any other.
"""

NO_PRIMARY_METHOD = "no_primary_method"


def counts_in_streak(reason_code: str) -> bool:
    return reason_code != NO_PRIMARY_METHOD
