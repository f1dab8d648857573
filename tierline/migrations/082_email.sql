-- Email done properly (issue 19): the notifier service's inbound door and outbound delivery.
-- One row per inbound mail (by its Message-ID), with what became of it; outbound notifications keep
-- their SMTP Message-ID (to match a bounce) and end 'failed' when delivery gave up.

CREATE TABLE IF NOT EXISTS inbound_emails (
    message_id       text        PRIMARY KEY,           -- the RFC 5322 Message-ID (or one derived from the bytes)
    received_at      timestamptz NOT NULL DEFAULT now(),
    door             text        NOT NULL,               -- 'smtp' or 'webhook'
    envelope_from    text,
    from_addr        text,
    subject          text,
    customer_id      text,
    conversation_id  text,
    contact_id       text,
    outcome          text        NOT NULL
                     CHECK (outcome IN ('contact', 'unknown_sender', 'spoofed', 'bounce', 'ignored')),
    detail           text,
    size_bytes       integer     NOT NULL DEFAULT 0,
    sha256           text,
    attachments      jsonb       NOT NULL DEFAULT '[]'::jsonb
);
CREATE INDEX IF NOT EXISTS inbound_emails_conversation ON inbound_emails (conversation_id, received_at);
CREATE INDEX IF NOT EXISTS inbound_emails_sender ON inbound_emails (lower(from_addr), received_at);

CREATE INDEX IF NOT EXISTS conversations_thread_ids ON conversations USING gin (email_thread_ids);

ALTER TABLE notifications ADD COLUMN IF NOT EXISTS smtp_message_id text;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS last_error text;
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('sending', 'delivered', 'suppressed', 'failed'));
CREATE INDEX IF NOT EXISTS notifications_smtp_message_id ON notifications (smtp_message_id)
    WHERE smtp_message_id IS NOT NULL;

CREATE INDEX IF NOT EXISTS customers_email_lower ON customers (lower(email));
CREATE INDEX IF NOT EXISTS stripe_customers_email_lower ON stripe_customers (lower(email));
