-- Version 3: indexes for the reputation service (`GET /reputation/{address}`, `POST /assess`):
-- a payer's settled payments and its audit events are found by an index range scan instead of
-- a scan of the whole ledger.
CREATE INDEX settlements_payer ON settlements (payer, state);
CREATE INDEX events_payer ON events (payer) WHERE payer IS NOT NULL;
