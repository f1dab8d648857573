-- Tier 3 approvals: a refund over the agent's limit (the policy's refund.human.needs_approval_over_usd_by_plan)
-- asked by the agent holding a case and decided by a second person, a lead with the approver role.
-- pending -> approved (the refund runs once, through the executor, under a key derived from the approval)
-- pending -> denied. The decision is one conditional UPDATE (WHERE status = 'pending'): two leads racing,
-- a double click or a retried request decide it once.
CREATE TABLE IF NOT EXISTS approvals (
    approval_id   text        PRIMARY KEY,
    case_id       text        NOT NULL REFERENCES cases (case_id),
    contact_id    text        NOT NULL,
    customer_id   text        NOT NULL,
    action        text        NOT NULL DEFAULT 'refund' CHECK (action IN ('refund')),
    charge_id     text        NOT NULL,
    amount_usd    numeric(12, 2) NOT NULL CHECK (amount_usd > 0),
    note          text        NOT NULL DEFAULT '',
    requested_by  text        NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    status        text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied')),
    decided_by    text,
    decided_at    timestamptz,
    decision_note text        NOT NULL DEFAULT '',
    -- what the approved refund did (the ActionRecord), once it ran
    result        jsonb,
    CHECK (status = 'pending' OR decided_by IS NOT NULL),
    CHECK (decided_by IS NULL OR decided_by <> requested_by)
);
CREATE INDEX IF NOT EXISTS approvals_pending ON approvals (requested_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS approvals_case ON approvals (case_id, requested_at);
