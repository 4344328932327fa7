"""Internal ids never collide with caller ids (issue 9, item 1).

Ids come from the whole alphabet CONTRACT.md allows (`[A-Za-z0-9._:-]{1,64}`), salted with the words the
code itself uses inside keys. For every kind of internal key (ledger accounts and their wire names,
posting ids, ledger transactions, refund saga ids, timer ids), two distinct things never share a key.
"""

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from platform_runtime.keys import compose, digest, label

from contracts.domain.sagas import saga_id_for
from escrow.domain import ledger
from escrow.domain.ledger import Account, TransactionId

pytestmark = pytest.mark.unit

ALPHABET = string.ascii_letters + string.digits + "._:-"
WORDS = ["charge", "hold", "escrow", "client", "freelancer", "gateway", "bonus", "refund", "release", "payment",
         "escrow_release", "bonus_charge", "compensate", "auto_release", "review_reminder", "refund_window",
         "USD", "EUR", ":", "::", "a:b", "fund-", "%3A", "%"]
ids = st.one_of(
    st.text(ALPHABET, min_size=1, max_size=64),
    st.sampled_from(WORDS),
    st.lists(st.sampled_from(WORDS + ["x", "1"]), min_size=1, max_size=5).map(":".join),
).filter(lambda s: 1 <= len(s) <= 64)
kinds = st.sampled_from([ledger.GATEWAY, ledger.CLIENT, ledger.FREELANCER, ledger.ESCROW])
currencies = st.sampled_from(["USD", "EUR", "GBP"])


def account(kind: str, owner: str, sub: str, currency: str) -> Account:
    if kind == ledger.GATEWAY:
        return ledger.gateway(currency)
    if kind == ledger.ESCROW:
        return ledger.escrow(owner, sub, currency)
    return Account(kind, owner, "", currency)


accounts = st.builds(account, kinds, ids, ids, currencies)


@settings(max_examples=200, deadline=None)
@given(accounts, accounts)
def test_distinct_accounts_have_distinct_wire_names(a, b):
    assert (a == b) == (str(a) == str(b))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["fund", "release", "refund", "bonus"]), ids, st.integers(0, 60),
       st.sampled_from(["fund", "release", "refund", "bonus"]), ids, st.integers(0, 60))
def test_distinct_postings_have_distinct_ids(kind_a, tx_a, leg_a, kind_b, tx_b, leg_b):
    same = (kind_a, tx_a, leg_a) == (kind_b, tx_b, leg_b)
    assert same == (TransactionId(kind_a, tx_a).posting_id(leg_a) == TransactionId(kind_b, tx_b).posting_id(leg_b))


@settings(max_examples=200, deadline=None)
@given(ids, ids)
def test_a_bonus_id_never_names_a_saga_steps_ledger_transaction(bonus_id, step_id):
    """The old ledger keyed both by the bare id: a bonus named like a hold made the hold a no-op."""
    assert TransactionId(ledger.BONUS, bonus_id) != TransactionId(ledger.FUND, step_id)


@settings(max_examples=200, deadline=None)
@given(st.lists(ids, min_size=1, max_size=4), st.lists(ids, min_size=1, max_size=4))
def test_composed_keys_and_labels_are_injective(a, b):
    assert (a == b) == (compose(*a) == compose(*b))
    assert (a == b) == (label(*a) == label(*b))
    assert (a == b) == (digest("p", *a) == digest("p", *b))


@settings(max_examples=200, deadline=None)
@given(ids, ids, ids, ids)
def test_refund_sagas_of_distinct_commands_and_milestones_never_share_an_id(cmd_a, m_a, cmd_b, m_b):
    """A refund saga is named by (starting message, milestone); `f"{a}:{b}"` made ("x:y", "z") == ("x", "y:z")."""
    same = (cmd_a, m_a) == (cmd_b, m_b)
    assert same == (saga_id_for("refund", compose(cmd_a, m_a)) == saga_id_for("refund", compose(cmd_b, m_b)))


def test_the_collisions_the_joined_strings_made_are_gone():
    assert ledger.escrow("a:b", "c", "USD") != ledger.escrow("a", "b:c", "USD")
    assert str(ledger.escrow("a:b", "c", "USD")) != str(ledger.escrow("a", "b:c", "USD"))
    assert str(ledger.client("x:USD", "USD")) != str(ledger.client("x", "USD"))
    assert compose("auto_release", "a:b") != compose("auto_release:a", "b")
    hold = TransactionId(ledger.FUND, "fund-1:hold")
    assert {hold.posting_id(0), hold.posting_id(1)}.isdisjoint(
        {TransactionId(ledger.BONUS, "fund-1:hold").posting_id(n) for n in range(2)})


# -- stored keys never change: the fast encoders write what json.dumps and uuid5 wrote ----------------
@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=5), st.sampled_from(["posting", "refund", "p"]))
def test_compose_and_digest_are_byte_for_byte_the_json_and_uuid5_encodings(parts, prefix):
    import json
    import uuid

    from platform_runtime.keys import _NAMESPACE

    as_json = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    assert compose(*parts) == as_json
    try:
        expected = f"{prefix}-{uuid.uuid5(_NAMESPACE, as_json).hex}"
    except UnicodeEncodeError:  # a lone surrogate: neither encoding takes it
        with pytest.raises(UnicodeEncodeError):
            digest(prefix, *parts)
        return
    assert digest(prefix, *parts) == expected
