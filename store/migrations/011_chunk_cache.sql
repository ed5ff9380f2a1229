-- The usage ledger gets one row per chunk, backend and model: a redelivered chunk (the worker died
-- after recording its call, or its publish failed) is never billed twice. And the chunk cache: a
-- chunk heard before, with everything that changes the answer the same, is answered without an ASR call.

-- Rows a redelivery recorded twice before this migration: the first keeps their sum, so the
-- ledger's totals do not change (those calls were paid).
WITH ranked AS (
    SELECT id, min(id) OVER (PARTITION BY job_id, chunk_seq, backend, model) AS keep
    FROM usage
    WHERE job_id IS NOT NULL AND chunk_seq IS NOT NULL
), extra AS (
    DELETE FROM usage u USING ranked r
    WHERE u.id = r.id AND r.id <> r.keep
    RETURNING r.keep, u.billed_seconds, u.cost_usd
)
UPDATE usage
SET billed_seconds = usage.billed_seconds + s.seconds, cost_usd = usage.cost_usd + s.cost
FROM (SELECT keep, sum(billed_seconds) AS seconds, sum(cost_usd) AS cost FROM extra GROUP BY keep) s
WHERE usage.id = s.keep;

-- Rows without a chunk (none are written today) stay free of it.
CREATE UNIQUE INDEX usage_chunk_call ON usage (job_id, chunk_seq, backend, model) WHERE chunk_seq IS NOT NULL;

-- key: SHA-256 of the chunk's encoded audio (without its container) and of everything that
-- changes the answer (transcriber/cache.py). raw_segments: the backend's answer, times relative
-- to the chunk. billed_seconds: what the call was billed, so a hit's saving can be priced.
-- job_id, chunk_seq: the call that filled it; purging that job deletes it (store.repo.purge_job).
CREATE TABLE chunk_cache (
    key             bytea PRIMARY KEY,
    backend         text NOT NULL,
    model           text NOT NULL,
    raw_segments    jsonb NOT NULL,
    billed_seconds  double precision NOT NULL,
    job_id          text REFERENCES jobs (id) ON DELETE CASCADE,
    chunk_seq       integer,
    hits            integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_hit_at     timestamptz
);
CREATE INDEX chunk_cache_job ON chunk_cache (job_id);
