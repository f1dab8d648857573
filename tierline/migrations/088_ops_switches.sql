-- Operators' switches (issue 24). `money`: paused, every automatic money action (refunds, payment
-- retries, plan changes that charge more) is not executed and its contact goes to a person with reason
-- `money_paused`; set by `tierline pause money` / `tierline resume money`, or by the spend breaker. One row
-- per switch; every change is also an audit event (who, why).
CREATE TABLE IF NOT EXISTS ops_switches (
    name       text        PRIMARY KEY,
    paused     boolean     NOT NULL DEFAULT false,
    reason     text        NOT NULL DEFAULT '',
    actor      text        NOT NULL DEFAULT '',
    details    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- The spend breaker sums the automatic refunds of the last hour: a partial index keeps that read small.
CREATE INDEX IF NOT EXISTS action_ledger_recent_refunds ON action_ledger (updated_at)
    WHERE action = 'refund' AND status IN ('succeeded', 'pending') AND actor <> 'human';

-- How often each consumer has started to handle a message that has not finished yet (keyed by the
-- record's place in the log): a message that crashes its process is counted across restarts and is
-- dead-lettered after the consumer's limit. A row is deleted when the message is committed or
-- dead-lettered, so the table holds at most the messages in flight that failed or began after a start.
CREATE TABLE IF NOT EXISTS consumer_attempts (
    consumer   text        NOT NULL,
    topic      text        NOT NULL,
    partition  integer     NOT NULL,
    "offset"   bigint      NOT NULL,
    attempts   integer     NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition, "offset")
);

-- Dead letters replayed by `tierline deadletter replay`: once each (the primary key refuses a second).
CREATE TABLE IF NOT EXISTS deadletter_replays (
    dead_letter_id text        PRIMARY KEY,
    original_topic text        NOT NULL,
    partition      integer,
    "offset"       bigint,
    actor          text        NOT NULL,
    replayed_at    timestamptz NOT NULL DEFAULT now()
);
