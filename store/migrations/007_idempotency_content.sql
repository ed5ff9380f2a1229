-- An Idempotency-Key is bound to the content of the request that first used it (a hash of the
-- link or file and the options), so a key alone never hands out someone else's job. Keys kept
-- from before have no hash and match no request. A key is at most 255 characters.

ALTER TABLE idempotency_keys ADD COLUMN request_hash text;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_key_length CHECK (length(key) <= 255) NOT VALID;
