-- Version 2: a payment is keyed by (network, scheme, asset, payer, payment_id) — the scheme's
-- own identity of it — instead of EIP-3009's (payer, nonce). Every row written before was an
-- `exact` payment, whose id is its authorization nonce. Runs in one transaction.
ALTER TABLE settlements ADD COLUMN scheme TEXT NOT NULL DEFAULT 'exact';
ALTER TABLE settlements ALTER COLUMN scheme DROP DEFAULT;
ALTER TABLE settlements RENAME COLUMN nonce TO payment_id;
ALTER TABLE settlements DROP CONSTRAINT settlements_pkey;
ALTER TABLE settlements
    ADD CONSTRAINT settlements_pkey PRIMARY KEY (network, scheme, asset, payer, payment_id);

ALTER TABLE claims ADD COLUMN scheme TEXT NOT NULL DEFAULT 'exact';
ALTER TABLE claims ALTER COLUMN scheme DROP DEFAULT;
ALTER TABLE claims RENAME COLUMN nonce TO payment_id;
ALTER TABLE claims DROP CONSTRAINT claims_pkey;
ALTER TABLE claims
    ADD CONSTRAINT claims_pkey PRIMARY KEY (network, scheme, asset, payer, payment_id);

ALTER TABLE attempts ADD COLUMN scheme TEXT NOT NULL DEFAULT 'exact';
ALTER TABLE attempts ALTER COLUMN scheme DROP DEFAULT;
ALTER TABLE attempts RENAME COLUMN nonce TO payment_id;
DROP INDEX attempts_payment;
CREATE INDEX attempts_payment ON attempts (network, scheme, asset, payer, payment_id);

-- The audit log keeps its rows and ids; the scheme of events written before is unknown (NULL).
ALTER TABLE events RENAME COLUMN nonce TO payment_id;
ALTER TABLE events ADD COLUMN scheme TEXT;
