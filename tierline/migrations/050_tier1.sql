-- Tier 1 self-heal: the request log behind the Health Meter (one row per contact Tier 1 took on).
-- Idempotent: databases where the service created this table itself at start-up (before this
-- migration existed) keep their rows.

CREATE TABLE IF NOT EXISTS tier1_requests (
    contact_id  text        PRIMARY KEY,
    customer_id text        NOT NULL,
    action      text        NOT NULL,
    params      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    state       text        NOT NULL DEFAULT 'received'
                CHECK (state IN ('received', 'resolved', 'handed_to_tier2', 'escalated')),
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tier1_requests_customer ON tier1_requests (customer_id, created_at);
