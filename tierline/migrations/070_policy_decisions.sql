-- Every policy decision the action executor made, with the verified facts it was made on (the PolicyContext
-- as JSON), so that a policy change can be replayed against recorded traffic without side effects
-- (`tierline policy simulate`). One row per ledger key: a redelivered message that is decided again
-- replaces the row (the latest decision is the one that took effect).
CREATE TABLE IF NOT EXISTS policy_decisions (
    idempotency_key text        PRIMARY KEY,
    contact_id      text        NOT NULL,
    customer_id     text        NOT NULL,
    action          text        NOT NULL,
    target          text,
    tier            text        NOT NULL,
    actor           text        NOT NULL,
    amount_usd      numeric(12, 2) NOT NULL DEFAULT 0,
    verdict         text        NOT NULL CHECK (verdict IN ('allow', 'deny', 'needs_human')),
    reason          text        NOT NULL DEFAULT '',
    rule            text        NOT NULL,
    policy_version  text        NOT NULL,
    context         jsonb       NOT NULL,
    decided_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS policy_decisions_decided_at ON policy_decisions (decided_at);
CREATE INDEX IF NOT EXISTS policy_decisions_contact ON policy_decisions (contact_id);
