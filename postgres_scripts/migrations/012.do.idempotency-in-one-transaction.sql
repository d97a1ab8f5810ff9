-- The Idempotency-Key is now claimed in the transaction that runs the request and stores
-- its response (plugins/idempotency.ts): a committed row always has its response, so a
-- retry after a failover finds the booking or nothing. Only the comments change.
COMMENT ON COLUMN idempotency_key.status_code IS 'The first response''s status. Null only inside the transaction of the request that holds the key (claimed, run and stored in one transaction), or in a claim an older version left when its process died, taken over after 5 minutes.';
COMMENT ON COLUMN idempotency_key.claim IS 'Which request holds the key: a request stores its response only under its own claim.';
