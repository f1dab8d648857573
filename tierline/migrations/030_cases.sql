-- Tier 3 case store: one case per contact handed to a human, with the full escalation packet.
-- A case is inserted idempotently (contact_id UNIQUE) before the escalation's offset is committed.

CREATE TABLE IF NOT EXISTS cases (
    case_id          text        PRIMARY KEY,
    contact_id       text        NOT NULL UNIQUE,
    customer_id      text        NOT NULL,
    reason           text        NOT NULL,
    priority         integer     NOT NULL CHECK (priority BETWEEN 1 AND 4),
    sla_due_at       timestamptz NOT NULL,
    status           text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'claimed', 'resolved')),
    assignee         text,
    queue            text        NOT NULL,
    packet           jsonb       NOT NULL,
    source_message_id uuid,
    opened_at        timestamptz NOT NULL DEFAULT now(),
    claimed_at       timestamptz,
    resolved_at      timestamptz,
    resolution_note  text,
    sla_alerted_at   timestamptz
);
CREATE INDEX IF NOT EXISTS cases_queue_order ON cases (queue, status, priority, sla_due_at);
CREATE INDEX IF NOT EXISTS cases_sla_open ON cases (sla_due_at) WHERE status <> 'resolved' AND sla_alerted_at IS NULL;

-- What humans did on a case (notes, refunds through the policy-checked tools, ...), in order.
CREATE TABLE IF NOT EXISTS case_actions (
    id          bigserial   PRIMARY KEY,
    case_id     text        NOT NULL REFERENCES cases (case_id),
    agent_id    text        NOT NULL,
    kind        text        NOT NULL,
    note        text        NOT NULL DEFAULT '',
    record      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS case_actions_case ON case_actions (case_id, id);
