-- Completion webhooks: the URL a job's terminal event is POSTed to, and how its delivery went.

ALTER TABLE jobs ADD COLUMN webhook_url text;

CREATE TABLE webhook_deliveries (
    job_id       text PRIMARY KEY,
    event        text NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    state        text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    last_status  integer,
    last_error   text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
