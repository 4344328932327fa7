"""Postings as the events carry them: account names and posting ids as strings (CONTRACT.md)."""

from platform_schemas import Posting

from . import ledger


def wire(postings: list[ledger.Posting]) -> list[Posting]:
    return [Posting(posting_id=p.posting_id, debit_account=str(p.debit_account), credit_account=str(p.credit_account),
                    amount=p.amount, currency=p.currency) for p in postings]
