-- Version 1: the ledger of release 0.1.0, exactly as it created a new file (its three
-- `ALTER TABLE settlements ADD COLUMN`s folded into the table, at the same position).
CREATE TABLE IF NOT EXISTS settlements (
    network       TEXT NOT NULL,
    asset         TEXT NOT NULL,
    payer         TEXT NOT NULL,
    nonce         TEXT NOT NULL,
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
    PRIMARY KEY (network, asset, payer, nonce)
);
CREATE INDEX IF NOT EXISTS settlements_state ON settlements (state);
CREATE TABLE IF NOT EXISTS claims (
    network     TEXT NOT NULL,
    asset       TEXT NOT NULL,
    payer       TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    owner       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (network, asset, payer, nonce)
);
CREATE TABLE IF NOT EXISTS events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('verify', 'settle', 'reconcile')),
    network  TEXT NOT NULL,
    payer    TEXT,
    nonce    TEXT,
    outcome  TEXT NOT NULL,
    reason   TEXT,
    tx_hash  TEXT
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS attempts (
    attempt     TEXT NOT NULL PRIMARY KEY,
    network     TEXT NOT NULL,
    asset       TEXT NOT NULL,
    payer       TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_payment ON attempts (network, asset, payer, nonce);
