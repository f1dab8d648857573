-- Tier 0 prevent: the durable dunning schedule, delivered notifications (once, rate-limited).

-- One schedule per failed invoice; each planned retry is one row in dunning_attempts.
CREATE TABLE IF NOT EXISTS dunning_schedules (
    invoice_id       text        PRIMARY KEY,
    customer_id      text        NOT NULL,
    contact_id       text        NOT NULL,
    decline_code     text,
    amount_due_cents bigint      NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    status           text        NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'recovered', 'canceled', 'exhausted', 'hard_decline')),
    close_reason     text,
    recovered_cents  bigint      NOT NULL DEFAULT 0,
    cause            jsonb       NOT NULL,           -- the stripe.event.received.v1 message that opened it
    created_at       timestamptz NOT NULL DEFAULT now(),
    closed_at        timestamptz
);
CREATE INDEX IF NOT EXISTS dunning_schedules_customer ON dunning_schedules (customer_id, created_at);

CREATE TABLE IF NOT EXISTS dunning_attempts (
    invoice_id  text        NOT NULL REFERENCES dunning_schedules (invoice_id) ON DELETE CASCADE,
    attempt_no  integer     NOT NULL CHECK (attempt_no >= 1),
    due_at      timestamptz NOT NULL,
    status      text        NOT NULL DEFAULT 'scheduled'
                CHECK (status IN ('scheduled', 'running', 'succeeded', 'failed', 'canceled')),
    claimed_by  text,
    claimed_at  timestamptz,
    finished_at timestamptz,
    decline_code text,
    result      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (invoice_id, attempt_no)
);
CREATE INDEX IF NOT EXISTS dunning_attempts_due ON dunning_attempts (due_at) WHERE status IN ('scheduled', 'running');

-- Every notification the notifier handled: delivered once per dedupe key, or suppressed by the rate limit.
CREATE TABLE IF NOT EXISTS notifications (
    dedupe_key   text        PRIMARY KEY,
    message_id   uuid        NOT NULL,
    contact_id   text        NOT NULL,
    customer_id  text        NOT NULL,
    channel      text        NOT NULL DEFAULT 'email',
    to_addr      text        NOT NULL,
    template     text        NOT NULL,
    subject      text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('sending', 'delivered', 'suppressed')),
    reason       text,
    attempts     integer     NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX IF NOT EXISTS notifications_customer ON notifications (customer_id, created_at);
