"""The gateway simulator's calls as functions of its own database: an ordinary charge, a void and a refund are each
one round trip and one commit (they were 8 commits and 24 statements for a charge as separate statements).

Made by the gateway database's migration (`billing migrate`, SimulatedGateway.create_tables), `CREATE OR REPLACE`:
run again on an existing database it brings them up to date. The service's DML-only role runs them with its own
rights (SECURITY INVOKER, EXECUTE is PUBLIC's by default).

Why one function keeps a void and a charge of the same key from crossing: every call on a key first takes the key's
advisory transaction lock, and a plpgsql function that is VOLATILE (the default) takes a fresh snapshot for each
statement in READ COMMITTED. So what a function reads after the lock includes everything the previous holder of
the lock committed: a charge that waited for a void sees its `sim_voids` row and refuses, a void that waited for a
charge sees its `sim_charges` row and gives it back. (A single SQL statement could not: its snapshot is taken before
it waits for the lock.)

Each returns a `verdict` the Python side turns into an answer or an exception: `unavailable` / `refuse` (a fault of
`sim_faults` on `detail`'s operation), `voided`, `charged`, `existing`, `refunded`, `exceeds`, `special` (a
card-network test token: the caller takes the slower path that plays it).
"""

# The fault of an operation on a token (`*` for every token), as the Python side checked it: the token's own row
# first. A void is refused by an outage of charges first, then by one of voids.
_FAULT = """
    SELECT f.mode, f.operation INTO fault FROM sim_faults f
    WHERE f.operation = ANY(operations) AND f.token IN (fault_token, '*') AND f.until > now()
    ORDER BY array_position(operations, f.operation::text), f.token = '*' LIMIT 1;
    IF FOUND THEN
        RETURN QUERY SELECT fault.mode::text, fault.operation::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;"""

CHARGE = """
CREATE OR REPLACE FUNCTION sim_charge(call_key text, card_token text, charge_amount bigint, charge_currency text,
                                      new_reference text)
RETURNS TABLE (verdict text, detail text, amount bigint, currency text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    operations text[] := ARRAY['charge'];
    fault_token text := card_token;
    fault record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(call_key));  -- a void of the same key waits, or is waited for
""" + _FAULT + """
    IF EXISTS (SELECT 1 FROM sim_voids v WHERE v.idempotency_key = call_key) THEN
        RETURN QUERY SELECT 'voided', NULL::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'existing', c.reference::text, c.amount, c.currency::text
                 FROM sim_charges c WHERE c.idempotency_key = call_key;
    IF FOUND THEN
        RETURN;
    END IF;
    INSERT INTO sim_charges (idempotency_key, reference, token, amount, currency, created_at)
    VALUES (call_key, new_reference, card_token, charge_amount, charge_currency, now());
    RETURN QUERY SELECT 'charged', new_reference, charge_amount, charge_currency;
END
$$"""

VOID = """
CREATE OR REPLACE FUNCTION sim_void(call_key text)
RETURNS TABLE (verdict text, detail text, amount bigint, currency text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    operations text[] := ARRAY['charge', 'void'];  -- the network down for charges is down for voids
    fault_token text;
    fault record;
    voided text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(call_key));  -- a charge of the same key waits, or is waited for
    SELECT c.token INTO fault_token FROM sim_charges c WHERE c.idempotency_key = call_key;
    fault_token := coalesce(fault_token, '*');
""" + _FAULT + """
    INSERT INTO sim_voids (idempotency_key, created_at) VALUES (call_key, now()) ON CONFLICT DO NOTHING;
    UPDATE sim_charges c SET refunded = c.amount WHERE c.idempotency_key = call_key RETURNING c.reference INTO voided;
    RETURN QUERY SELECT 'voided', coalesce(voided, ''), NULL::bigint, NULL::text;
END
$$"""

REFUND = """
CREATE OR REPLACE FUNCTION sim_refund(call_key text, charge_reference text, refund_amount bigint)
RETURNS TABLE (verdict text, detail text, amount bigint, currency text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    operations text[] := ARRAY['refund'];
    fault_token text;
    fault record;
    charge record;
BEGIN
    IF EXISTS (SELECT 1 FROM sim_refunds r WHERE r.idempotency_key = call_key) THEN
        RETURN QUERY SELECT 'refunded', NULL::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    -- the charge locked: refunds of it never overlap (a second one waits here, then sees the first one's rows)
    SELECT c.token, c.amount, c.refunded INTO charge FROM sim_charges c WHERE c.reference = charge_reference
    FOR UPDATE;
    fault_token := coalesce(charge.token, '*');
""" + _FAULT + """
    IF charge.token = 'tok_processingError' THEN
        RETURN QUERY SELECT 'special', NULL::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM sim_refunds r WHERE r.idempotency_key = call_key) THEN  -- made while this one waited
        RETURN QUERY SELECT 'refunded', NULL::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    IF charge.amount IS NULL OR charge.amount - charge.refunded < refund_amount THEN
        RETURN QUERY SELECT 'exceeds', NULL::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    INSERT INTO sim_refunds (idempotency_key, charge_reference, amount, created_at)
    VALUES (call_key, charge_reference, refund_amount, now());
    UPDATE sim_charges c SET refunded = c.refunded + refund_amount WHERE c.reference = charge_reference;
    RETURN QUERY SELECT 'refunded', NULL::text, NULL::bigint, NULL::text;
END
$$"""

FUNCTIONS = (CHARGE, VOID, REFUND)
