"""Amounts as people read them: integer minor units to "1,500.00 USD"."""

# Every currency the platform accepts (USD, EUR, GBP) has two decimals; one with another
# exponent would be listed here.
MINOR_DIGITS: dict[str, int] = {"USD": 2, "EUR": 2, "GBP": 2}


def format_amount(amount: int, currency: str) -> str:
    digits = MINOR_DIGITS.get(currency, 2)
    sign = "-" if amount < 0 else ""
    whole, minor = divmod(abs(amount), 10 ** digits)
    fraction = f".{minor:0{digits}d}" if digits else ""
    return f"{sign}{whole:,}{fraction} {currency}"
