-- The gateway: how far the input has been decoded, per-deployment secrets (the job tokens'
-- key, shared by every gateway process), and the Idempotency-Key of each submit.

ALTER TABLE jobs ADD COLUMN seconds_decoded double precision NOT NULL DEFAULT 0;

CREATE TABLE secrets (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE idempotency_keys (
    key        text PRIMARY KEY,
    job_id     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
