"""Which failed charges count towards a client's automatic suspension. Pure.

A client is suspended after a number of consecutive failed charges (contracts decides, from the streak
billing reports on each `ChargeFailed`). A charge refused because the client has no primary billing
method never reached a card and took nothing, nor did a charge the gateway never answered (an outage is
not the client's doing): neither counts nor breaks the streak. A declined bonus charge counts like any other.
"""

NO_PRIMARY_METHOD = "no_primary_method"
GATEWAY_UNAVAILABLE = "gateway_unavailable"


def counts_in_streak(reason_code: str) -> bool:
    return reason_code not in (NO_PRIMARY_METHOD, GATEWAY_UNAVAILABLE)
