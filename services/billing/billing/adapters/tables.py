"""Billing's database: billing methods, charges, refunds, transaction history, the daily bonus batches."""

from sqlalchemy import (
    BigInteger, Boolean, Column, Date, DateTime, Index, Integer, MetaData, String, Table, Text,
)
from sqlalchemy.dialects.postgresql import JSONB

from platform_runtime.tables import add_runtime_tables

metadata = MetaData()
add_runtime_tables(metadata)

known_accounts = Table(
    "known_accounts", metadata,  # who billing has heard of (contracts' AccountRegistered): others get 404
    Column("account_id", String(64), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
)

billing_methods = Table(
    "billing_methods", metadata,
    Column("billing_method_id", String(64), primary_key=True),
    Column("account_id", String(64), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("token", String(200), nullable=False),
    Column("is_primary", Boolean, nullable=False, server_default="false"),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("removed_at", DateTime(timezone=True)),
)
Index("one_primary_per_account", billing_methods.c.account_id, unique=True,
      postgresql_where=billing_methods.c.is_primary & billing_methods.c.removed_at.is_(None))

# The gateway's work: a charge or refund row is recorded `pending` by the consumer (visible at once) and
# carried out by the gateway loop (service_layer/gateway_loop.py), which writes the outcome and its event.
def _work_columns() -> list[Column]:
    """What the gateway loop keeps per row: tries so far, when to try next, why the last one failed."""
    return [
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("next_attempt_at", DateTime(timezone=True)),
        # The bound, set at the first call: no answer by then, the work ends unanswered.
        Column("give_up_at", DateTime(timezone=True)),
        Column("last_error", Text),
        Column("reason_code", String(50)),
        Column("message", Text),
        # The saga command's correlation, causation and actor: the outcome event carries them on.
        Column("correlation_id", String(200)),
        Column("causation_id", String(200)),
        Column("actor", String(200)),
        # ... and its W3C trace context, so what the loop settles later stays in the saga's one trace.
        Column("traceparent", String(55)),
        Column("tracestate", String(512)),
        Column("settled_at", DateTime(timezone=True)),
    ]


charges = Table(
    "charges", metadata,
    Column("charge_id", String(200), primary_key=True),  # the saga step id = the gateway idempotency key
    Column("saga_id", String(200), nullable=False),
    Column("contract_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False, index=True),
    Column("billing_method_id", String(64)),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("purpose", String(20), nullable=False),
    Column("milestones", JSONB, nullable=False, server_default="[]"),  # [{milestone_id, amount}]
    Column("status", String(20), nullable=False),  # pending -> succeeded | failed
    Column("gateway_reference", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # A charge given up (gateway_unavailable) is voided by its key once the gateway answers: pending -> done.
    Column("void_status", String(20)),
    *_work_columns(),
)
Index("charges_due", charges.c.next_attempt_at, postgresql_where=charges.c.status == "pending")
Index("charges_void_due", charges.c.next_attempt_at, postgresql_where=charges.c.void_status == "pending")

refunds = Table(
    "refunds", metadata,
    Column("refund_id", String(200), primary_key=True),  # the saga step id = the gateway idempotency key
    Column("charge_id", String(200), nullable=False),
    Column("saga_id", String(200), nullable=False),
    Column("contract_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("milestone_id", String(64)),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False),  # pending -> refunded | needs_attention -> (RetryRefund) pending
    Column("gateway_reference", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    *_work_columns(),
)
Index("refunds_due", refunds.c.next_attempt_at, postgresql_where=refunds.c.status == "pending")
Index("refunds_needing_attention", refunds.c.created_at, postgresql_where=refunds.c.status == "needs_attention")

client_charge_streaks = Table(
    "client_charge_streaks", metadata,
    Column("client_id", String(64), primary_key=True),
    Column("consecutive_failures", Integer, nullable=False),
)

transactions = Table(
    "transactions", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("transaction_id", String(250), nullable=False, unique=True),
    Column("account_id", String(64), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("description", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),  # signed from the account holder's side
    Column("currency", String(3), nullable=False),
    Column("contract_id", String(64)),
    Column("milestone_id", String(64)),
    Column("bonus_id", String(64)),
    Column("available_at", DateTime(timezone=True)),  # earnings: the end of their security period
)
Index("transactions_by_account", transactions.c.account_id, transactions.c.occurred_at, transactions.c.seq)

# -- the daily bonus batch -----------------------------------------------------------------------
bonuses = Table(
    "bonuses", metadata,  # learnt from contracts' BonusGiven
    Column("bonus_id", String(64), primary_key=True),
    Column("contract_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("freelancer_id", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("business_date", Date, nullable=False),  # the UTC day contracts accepted it
    Column("given_at", DateTime(timezone=True), nullable=False),
    Column("batch_date", Date),  # the batch that took it; NULL while pending
    Column("status", String(20), nullable=False),  # domain/bonus_batch_states.py: BonusStatus
    Column("charge_id", String(64)),
    Column("reason_code", String(50)),
    Column("message", Text),
    Column("settled_at", DateTime(timezone=True)),
    # Set at its first declined charge: the last UTC day a batch retries it (past due until then); cleared when
    # it is paid or failed, so that the past-due index holds only what is owed.
    Column("past_due_until", Date),
    # A quarter of each page left free for the versions a bonus's moves write in place (migration 4b9e2d7c1a63).
    postgresql_with={"fillfactor": 75},
)
# No index names `status` or `charge_id`, not even in a predicate: a move that changes only those (charged,
# crediting, paid) is then an update in place, with no index entry written. The steps find their work by charge
# (bonus_charges.followed_up_at).
Index("bonuses_past_due", bonuses.c.client_id, postgresql_where=bonuses.c.past_due_until.is_not(None))
# The collect step takes pending bonuses by client (bonus_repository.take_pending).
Index("bonuses_pending_by_client", bonuses.c.client_id, bonuses.c.currency, bonuses.c.given_at,
      postgresql_where=bonuses.c.batch_date.is_(None))
Index("bonuses_by_batch_client", bonuses.c.batch_date, bonuses.c.client_id, bonuses.c.currency)

bonus_batches = Table(
    "bonus_batches", metadata,
    Column("business_date", Date, primary_key=True),
    Column("status", String(20), nullable=False),  # domain/bonus_batch_states.py: BatchStatus
    Column("cutoff", DateTime(timezone=True), nullable=False),  # bonuses given before it belong to the batch
    Column("correlation_id", String(200), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("started_by", String(200), nullable=False),  # id of the command or timer that started it
    # Who is told BonusBatchCompleted at the end: [{command_id, correlation_id, actor}]
    Column("waiters", JSONB, nullable=False),
    Column("bonuses", Integer),
    Column("paid", Integer),
    Column("failed", Integer),
    Column("past_due", Integer),
    Column("totals", JSONB),
    Column("failures", JSONB),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
)

bonus_charges = Table(
    "bonus_charges", metadata,  # one per batch, client and currency
    Column("charge_id", String(64), primary_key=True),
    Column("idempotency_key", String(250), nullable=False, unique=True),  # the gateway's
    Column("business_date", Date, nullable=False),
    # The UTC day the batch that makes this charge started: a client is charged once a day per currency.
    Column("charge_date", Date, nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("bonuses", Integer, nullable=False),
    Column("status", String(20), nullable=False),  # pending | succeeded | failed
    Column("billing_method_id", String(64)),
    Column("gateway_reference", String(200)),
    Column("reason_code", String(50)),
    Column("message", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("retry_at", DateTime(timezone=True)),
    Column("give_up_at", DateTime(timezone=True)),  # set at the first call: the gateway policy's bound
    Column("last_error", Text),
    Column("settled_at", DateTime(timezone=True)),
    # A charge given up unanswered (gateway_unavailable) may have been taken: voided by its idempotency key,
    # pending -> done, asked again at `retry_at` until the gateway answers. Its bonuses wait for it before a
    # later batch charges them again under that batch's key.
    Column("void_status", String(20)),
    # When the charge's bonuses were moved on after it was settled: asked of escrow (succeeded), or made past due
    # or failed (failed). NULL while it is pending or some of its bonuses still wait: the credit and fail steps'
    # work, found by the partial index below.
    Column("followed_up_at", DateTime(timezone=True)),
)
Index("bonus_charges_void_due", bonus_charges.c.retry_at, postgresql_where=bonus_charges.c.void_status == "pending")
Index("bonus_charges_by_batch", bonus_charges.c.business_date, bonus_charges.c.status, bonus_charges.c.charge_id)
Index("bonus_charges_to_follow_up", bonus_charges.c.business_date, bonus_charges.c.status, bonus_charges.c.charge_id,
      postgresql_where=bonus_charges.c.followed_up_at.is_(None))
# The credit window, counted exactly: bonuses of a batch asked of escrow (side "asked", moved charged ->
# crediting) and answered (side "posted", moved crediting -> paid), each side counted in the statement that
# moves them. Two rows, so the credit step (which locks "asked") and the consumer of escrow's answers never
# wait for each other; in flight = asked - posted.
bonus_credit_counts = Table(
    "bonus_credit_counts", metadata,
    Column("business_date", Date, primary_key=True),
    Column("side", String(10), primary_key=True),  # asked | posted
    Column("bonuses", BigInteger, nullable=False),
)

# The rule "charged once daily", kept by the collect step and guarded here: a second charge of a day fails loudly.
Index("one_bonus_charge_a_day", bonus_charges.c.client_id, bonus_charges.c.currency, bonus_charges.c.charge_date,
      unique=True)

# What each client owes per currency for declined bonus charges still being retried (billing.events tells
# contracts and escrow with PastDueBalanceChanged whenever it changes).
past_due_balances = Table(
    "past_due_balances", metadata,
    Column("client_id", String(64), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("amount", BigInteger, nullable=False),
    Column("retry_until", Date),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # One more at each change, told with it (PastDueBalanceChanged.version): consumers keep the newest.
    Column("version", BigInteger, nullable=False, server_default="0"),
)
