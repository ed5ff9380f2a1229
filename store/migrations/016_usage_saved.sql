-- What a cache hit saved: the cost the call it replaced was billed (a chunk cache entry's seconds at the
-- model's price, or a replayed job's own chunk's cost). 0 for a call that was made.
ALTER TABLE usage ADD COLUMN saved_usd numeric(12, 6) NOT NULL DEFAULT 0;
