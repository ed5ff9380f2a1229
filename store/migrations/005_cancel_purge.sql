-- A job can be cancelled (DELETE /v1/jobs/{id}); a finished one can have its transcript and
-- audio purged, keeping the row (status, timings, usage) for the ledger.

ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled'));
ALTER TABLE jobs ADD COLUMN purged_at timestamptz;
