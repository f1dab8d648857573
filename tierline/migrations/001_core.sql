-- Core pipeline tables: idempotent consumers, the action ledger, contacts and their one outcome.

CREATE TABLE IF NOT EXISTS inbox (
    consumer     text        NOT NULL,
    message_id   uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

-- Every external action, once: the idempotency key is derived from (contact, action, target).
CREATE TABLE IF NOT EXISTS action_ledger (
    idempotency_key text        PRIMARY KEY,
    contact_id      text        NOT NULL,
    customer_id     text        NOT NULL,
    action          text        NOT NULL,
    target          text,
    tier            text        NOT NULL,
    actor           text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'denied')),
    amount_usd      numeric(12, 2) NOT NULL DEFAULT 0,
    result          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error           text,
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS action_ledger_contact ON action_ledger (contact_id);
CREATE INDEX IF NOT EXISTS action_ledger_customer_action ON action_ledger (customer_id, action, created_at);

CREATE TABLE IF NOT EXISTS contacts (
    contact_id  text        PRIMARY KEY,
    customer_id text        NOT NULL,
    trigger     text        NOT NULL,
    channel     text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    intent      text,
    confidence  double precision
);
CREATE INDEX IF NOT EXISTS contacts_customer ON contacts (customer_id, started_at);

-- Exactly one terminal outcome per contact: the first writer wins, later ones re-publish it.
CREATE TABLE IF NOT EXISTS outcomes (
    contact_id  text        PRIMARY KEY,
    customer_id text        NOT NULL,
    message_id  uuid        NOT NULL,
    resolved_by text        NOT NULL,
    message     jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Stripe webhook events seen by the ingress (de-duplication by event id).
CREATE TABLE IF NOT EXISTS webhook_events (
    event_id    text        PRIMARY KEY,
    event_type  text        NOT NULL,
    customer_id text,
    received_at timestamptz NOT NULL DEFAULT now()
);
