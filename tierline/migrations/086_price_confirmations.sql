-- A plan or seat change that raises the price, asked in text, waits for the customer to confirm the new
-- price (the policy's change_plan.price_increase_needs_confirmation). One row per (contact, subscription,
-- plan, seats): its id is derived from them, so a redelivered request asks once. The customer confirms on
-- tier 1's signed confirm page (token purpose "confirm_price", subject = the id); the change then runs once
-- through the executor under a key derived from the id.
CREATE TABLE IF NOT EXISTS price_confirmations (
    confirmation_id  text        PRIMARY KEY,
    contact_id       text        NOT NULL,
    customer_id      text        NOT NULL,
    subscription_id  text        NOT NULL,
    plan             text        NOT NULL,
    seats            integer,
    old_amount_cents integer     NOT NULL,
    new_amount_cents integer     NOT NULL,
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    confirmed_at     timestamptz,
    result           jsonb
);
CREATE INDEX IF NOT EXISTS price_confirmations_customer ON price_confirmations (customer_id, created_at);
