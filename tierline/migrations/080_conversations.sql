-- Conversations (issue 19): a conversation owns its contacts; every message to or from the customer is a
-- turn. A customer turn's id is its contact.received message id; a reply's id is its
-- conversation.message.sent.v1 message id, so a redelivered message stores nothing twice.

CREATE TABLE IF NOT EXISTS conversations (
    conversation_id  text        PRIMARY KEY,
    customer_id      text        NOT NULL,
    channel          text        NOT NULL,
    status           text        NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'waiting_customer', 'with_human', 'resolved')),
    subject          text,
    customer_email   text,
    email_thread_ids text[]      NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS conversations_customer ON conversations (customer_id, updated_at);

CREATE TABLE IF NOT EXISTS conversation_turns (
    turn_id          uuid        PRIMARY KEY,
    seq              bigserial,
    conversation_id  text        NOT NULL REFERENCES conversations (conversation_id),
    role             text        NOT NULL CHECK (role IN ('customer', 'assistant', 'agent', 'system')),
    kind             text        NOT NULL,
    author           text        NOT NULL,
    contact_id       text,
    text             text        NOT NULL,
    choices          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    email_message_id text,
    delivery         text        NOT NULL DEFAULT 'stored' CHECK (delivery IN ('stored', 'sent', 'failed')),
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS conversation_turns_order ON conversation_turns (conversation_id, seq);
CREATE INDEX IF NOT EXISTS conversation_turns_email ON conversation_turns (email_message_id)
    WHERE email_message_id IS NOT NULL;

ALTER TABLE contacts ADD COLUMN IF NOT EXISTS conversation_id text;
CREATE INDEX IF NOT EXISTS contacts_conversation ON contacts (conversation_id);

-- The customer's rating of an answer: CSAT 1-5 and "did this solve it?", one per contact.
CREATE TABLE IF NOT EXISTS conversation_ratings (
    conversation_id  text        NOT NULL REFERENCES conversations (conversation_id),
    contact_id       text        NOT NULL,
    csat             smallint    CHECK (csat BETWEEN 1 AND 5),
    solved           boolean,
    rated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, contact_id)
);
