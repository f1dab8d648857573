-- The "never a dead end" sweeper (tierline/sweeper.py): contacts it handed to a person because they had
-- no outcome long after they started. One row per contact, whichever replica swept it first.
CREATE TABLE IF NOT EXISTS swept_contacts (
    contact_id  text        PRIMARY KEY,
    customer_id text        NOT NULL,
    message_id  uuid        NOT NULL,
    swept_by    text        NOT NULL,
    swept_at    timestamptz NOT NULL DEFAULT now()
);

-- The sweep looks for old contacts without an outcome.
CREATE INDEX IF NOT EXISTS contacts_started_at ON contacts (started_at);
