-- Version 2: a payment is keyed by (network, scheme, asset, payer, payment_id) — the scheme's
-- own identity of it — instead of EIP-3009's (payer, nonce). Every row written before was an
-- `exact` payment, whose id is its authorization nonce.
--
-- SQLite cannot change a primary key in place: settlements, claims and attempts are rebuilt
-- (new table, rows copied, old table dropped, new one renamed, indexes re-created), inside the
-- runner's transaction, so a failure leaves version 1 untouched.
CREATE TABLE settlements_v2 (
    network       TEXT NOT NULL,
    scheme        TEXT NOT NULL,
    asset         TEXT NOT NULL,
    payer         TEXT NOT NULL,
    payment_id    TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('verified', 'submitted', 'confirmed', 'failed')),
    amount        TEXT NOT NULL,
    pay_to        TEXT NOT NULL,
    tx_hash       TEXT,
    error_reason  TEXT,
    payment_json  TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    attempt       TEXT,
    lease_until   INTEGER,
    valid_before  INTEGER,
    PRIMARY KEY (network, scheme, asset, payer, payment_id)
);
INSERT INTO settlements_v2
    (network, scheme, asset, payer, payment_id, state, amount, pay_to, tx_hash, error_reason,
     payment_json, created_at, updated_at, attempt, lease_until, valid_before)
SELECT network, 'exact', asset, payer, nonce, state, amount, pay_to, tx_hash, error_reason,
       payment_json, created_at, updated_at, attempt, lease_until, valid_before
FROM settlements;
DROP TABLE settlements;
ALTER TABLE settlements_v2 RENAME TO settlements;
CREATE INDEX settlements_state ON settlements (state);

CREATE TABLE claims_v2 (
    network     TEXT NOT NULL,
    scheme      TEXT NOT NULL,
    asset       TEXT NOT NULL,
    payer       TEXT NOT NULL,
    payment_id  TEXT NOT NULL,
    owner       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (network, scheme, asset, payer, payment_id)
);
INSERT INTO claims_v2 (network, scheme, asset, payer, payment_id, owner, expires_at)
SELECT network, 'exact', asset, payer, nonce, owner, expires_at FROM claims;
DROP TABLE claims;
ALTER TABLE claims_v2 RENAME TO claims;

CREATE TABLE attempts_v2 (
    attempt     TEXT NOT NULL PRIMARY KEY,
    network     TEXT NOT NULL,
    scheme      TEXT NOT NULL,
    asset       TEXT NOT NULL,
    payer       TEXT NOT NULL,
    payment_id  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
INSERT INTO attempts_v2 (attempt, network, scheme, asset, payer, payment_id, created_at)
SELECT attempt, network, 'exact', asset, payer, nonce, created_at FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_v2 RENAME TO attempts;
CREATE INDEX attempts_payment ON attempts (network, scheme, asset, payer, payment_id);

-- The audit log keeps its rows and ids; the scheme of events written before is unknown (NULL).
ALTER TABLE events RENAME COLUMN nonce TO payment_id;
ALTER TABLE events ADD COLUMN scheme TEXT;
