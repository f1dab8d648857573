-- The Stripe mirror (kept fresh by webhooks, filled by live reads on a miss) and the
-- subscription / entitlement store (the source of truth for what a customer has).
-- Mirror rows carry `version`: the Stripe event's `created` (ms) or the live read time. An upsert only
-- replaces a row with an equal-or-newer version, so replaying events in any order converges.

CREATE TABLE IF NOT EXISTS stripe_customers (
    id                      text PRIMARY KEY,
    email                   text,
    name                    text,
    address                 jsonb NOT NULL DEFAULT '{}'::jsonb,
    tax_ids                 jsonb NOT NULL DEFAULT '[]'::jsonb,
    default_payment_method  text,
    metadata                jsonb NOT NULL DEFAULT '{}'::jsonb,
    deleted                 boolean NOT NULL DEFAULT false,
    created                 timestamptz,
    version                 bigint NOT NULL,
    synced_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS stripe_payment_methods (
    id          text PRIMARY KEY,
    customer_id text,
    brand       text,
    last4       text,
    exp_month   integer,
    exp_year    integer,
    detached    boolean NOT NULL DEFAULT false,
    version     bigint NOT NULL,
    synced_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stripe_payment_methods_customer ON stripe_payment_methods (customer_id);

CREATE TABLE IF NOT EXISTS stripe_invoices (
    id                   text PRIMARY KEY,
    customer_id          text NOT NULL,
    subscription_id      text,
    status               text NOT NULL,
    amount_due_cents     bigint NOT NULL DEFAULT 0,
    amount_paid_cents    bigint NOT NULL DEFAULT 0,
    currency             text NOT NULL DEFAULT 'usd',
    attempt_count        integer NOT NULL DEFAULT 0,
    next_payment_attempt timestamptz,
    hosted_invoice_url   text,
    link_expires_at      timestamptz,
    last_decline_code    text,
    last_failure_message text,
    charge_id            text,
    payment_intent_id    text,
    created              timestamptz,
    period_start         timestamptz,
    period_end           timestamptz,
    version              bigint NOT NULL,
    synced_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stripe_invoices_customer ON stripe_invoices (customer_id, created DESC);

CREATE TABLE IF NOT EXISTS stripe_payment_intents (
    id                text PRIMARY KEY,
    customer_id       text,
    invoice_id        text,
    status            text NOT NULL,
    amount_cents      bigint NOT NULL DEFAULT 0,
    last_decline_code text,
    created           timestamptz,
    version           bigint NOT NULL,
    synced_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stripe_payment_intents_customer ON stripe_payment_intents (customer_id);

CREATE TABLE IF NOT EXISTS stripe_charges (
    id                    text PRIMARY KEY,
    customer_id           text NOT NULL,
    invoice_id            text,
    payment_intent_id     text,
    amount_cents          bigint NOT NULL,
    amount_refunded_cents bigint NOT NULL DEFAULT 0,
    currency              text NOT NULL DEFAULT 'usd',
    status                text NOT NULL,           -- succeeded | pending | failed
    failure_code          text,
    decline_code          text,
    payment_method_id     text,
    description           text,
    disputed              boolean NOT NULL DEFAULT false,
    created               timestamptz NOT NULL,
    version               bigint NOT NULL,
    synced_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stripe_charges_customer ON stripe_charges (customer_id, created DESC);

CREATE TABLE IF NOT EXISTS stripe_refunds (
    id           text PRIMARY KEY,
    charge_id    text NOT NULL,
    customer_id  text,
    amount_cents bigint NOT NULL,
    status       text NOT NULL,                    -- pending | succeeded | failed | canceled
    reason       text,
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created      timestamptz NOT NULL,
    version      bigint NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stripe_refunds_customer ON stripe_refunds (customer_id, created DESC);

CREATE TABLE IF NOT EXISTS stripe_disputes (
    id           text PRIMARY KEY,
    charge_id    text NOT NULL,
    customer_id  text,
    amount_cents bigint NOT NULL,
    status       text NOT NULL,                    -- warning_needs_response | needs_response | under_review | won | lost ...
    reason       text,
    created      timestamptz NOT NULL,
    version      bigint NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stripe_disputes_customer ON stripe_disputes (customer_id);

-- ----------------------------------------------------------------- subscription / entitlement store
CREATE TABLE IF NOT EXISTS plans (
    id                 text PRIMARY KEY,            -- starter | pro | business | enterprise (or custom)
    name               text NOT NULL,
    price_usd          numeric(12, 2) NOT NULL,
    interval           text NOT NULL DEFAULT 'month',
    seat_limit         integer,
    included_usage     jsonb NOT NULL DEFAULT '{}'::jsonb,   -- metric -> units per period
    overage_unit_usd   jsonb NOT NULL DEFAULT '{}'::jsonb,   -- metric -> USD per unit over
    tier               text NOT NULL,               -- the policy tier: starter | pro | business | enterprise
    active             boolean NOT NULL DEFAULT true
);

INSERT INTO plans (id, name, price_usd, interval, seat_limit, included_usage, overage_unit_usd, tier) VALUES
    ('starter',    'Starter',      19,  'month', 3,    '{"api_calls": 100000}',   '{"api_calls": 0.0002}',  'starter'),
    ('pro',        'Pro',          49,  'month', 15,   '{"api_calls": 500000}',   '{"api_calls": 0.0002}',  'pro'),
    ('business',   'Business',     299, 'month', 100,  '{"api_calls": 2000000}',  '{"api_calls": 0.00015}', 'business'),
    ('enterprise', 'Enterprise',   999, 'month', NULL, '{"api_calls": 10000000}', '{"api_calls": 0.0001}',  'enterprise')
ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS customers (
    id            text PRIMARY KEY,                -- the Stripe customer id
    email         text,
    name          text,
    country       text,
    plan_tier     text,
    tenure_start  timestamptz,
    risk_flags    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS subscriptions (
    id                     text PRIMARY KEY,       -- the Stripe subscription id
    customer_id            text NOT NULL,
    plan_id                text NOT NULL REFERENCES plans (id),
    status                 text NOT NULL,          -- active | trialing | past_due | canceled | unpaid | incomplete
    seats                  integer NOT NULL DEFAULT 1,
    price_usd              numeric(12, 2) NOT NULL,
    current_period_start   timestamptz,
    current_period_end     timestamptz,
    cancel_at_period_end   boolean NOT NULL DEFAULT false,
    canceled_at            timestamptz,
    version                bigint NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS subscriptions_customer ON subscriptions (customer_id);

CREATE TABLE IF NOT EXISTS entitlements (
    customer_id  text NOT NULL,
    feature      text NOT NULL,
    limit_value  bigint,
    source       text NOT NULL DEFAULT 'plan',
    PRIMARY KEY (customer_id, feature)
);
