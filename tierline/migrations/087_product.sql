-- The reference product (services/product/): a small SaaS product's own tables, so the product connector
-- (tierline/product_connector.py) acts on a real API over HTTP. tierline never writes these tables itself.
-- Accounts are keyed by the billing customer id; members by (account, email); API key secrets are stored
-- only as a SHA-256 hash (the secret is shown once, at creation or rotation).
CREATE TABLE IF NOT EXISTS product_accounts (
    account_id  text        PRIMARY KEY,
    name        text        NOT NULL DEFAULT '',
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS product_members (
    account_id        text        NOT NULL REFERENCES product_accounts (account_id),
    email             text        NOT NULL,
    role              text        NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'billing')),
    status            text        NOT NULL DEFAULT 'invited' CHECK (status IN ('invited', 'active', 'removed')),
    invite_token_hash text,
    invite_expires_at timestamptz,
    invited_by        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, email)
);
-- one owner per account, always
CREATE UNIQUE INDEX IF NOT EXISTS product_members_one_owner
    ON product_members (account_id) WHERE role = 'owner' AND status = 'active';
CREATE UNIQUE INDEX IF NOT EXISTS product_members_invite
    ON product_members (invite_token_hash) WHERE invite_token_hash IS NOT NULL;

CREATE TABLE IF NOT EXISTS product_api_keys (
    key_id      text        PRIMARY KEY,
    account_id  text        NOT NULL REFERENCES product_accounts (account_id),
    name        text        NOT NULL DEFAULT '',
    prefix      text        NOT NULL,
    last4       text        NOT NULL,
    secret_hash text        NOT NULL UNIQUE,
    scopes      text[]      NOT NULL DEFAULT '{}',
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- a rotated key keeps working until expires_at (the overlap); a revoked one stops at once
    expires_at  timestamptz,
    revoked_at  timestamptz,
    replaced_by text
);
CREATE INDEX IF NOT EXISTS product_api_keys_account ON product_api_keys (account_id, created_at);

-- Idempotency-Key of a mutating request -> the response it got (replayed for 24 hours)
CREATE TABLE IF NOT EXISTS product_idempotency (
    idempotency_key text        PRIMARY KEY,
    account_id      text        NOT NULL,
    request_path    text        NOT NULL,
    status_code     integer     NOT NULL,
    response        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
