-- Accounts: plans (what a user may use), users (who is on which plan) and their API keys.
-- A plan's NULL limit means no limit. Minutes, not seconds: the unit operators and users speak.
-- A key is kept only as the SHA-256 of its text (it has 256 random bits, so no salt or slow
-- hash is needed) and a short prefix to name it by; last_used_at is updated at most once a minute.

CREATE TABLE plans (
    name                     text PRIMARY KEY,
    max_job_minutes          double precision,  -- the longest recording one job may have
    jobs_per_month           integer,
    audio_minutes_per_day    double precision,
    audio_minutes_per_month  double precision,
    concurrent_jobs          integer,
    live_minutes_per_month   double precision,
    requests_per_minute      integer,           -- NULL: SCRIBE_RATE_LIMIT applies
    updated_at               timestamptz NOT NULL DEFAULT now()
);

INSERT INTO plans (name, max_job_minutes, jobs_per_month, audio_minutes_per_day, audio_minutes_per_month,
                   concurrent_jobs, live_minutes_per_month, requests_per_minute) VALUES
    ('free',      10,   3,    30,   30,   1,    30,   60),
    ('learner',   60,   25,   180,  1500, 2,    300,  120),
    ('unlimited', NULL, NULL, NULL, NULL, NULL, NULL, NULL);

CREATE TABLE users (
    id          text PRIMARY KEY,
    plan        text NOT NULL DEFAULT 'free' REFERENCES plans (name) ON UPDATE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    prefix        text PRIMARY KEY,
    key_hash      bytea NOT NULL UNIQUE,
    user_id       text NOT NULL REFERENCES users (id),
    admin         boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_user ON api_keys (user_id);

-- Quotas count a user's jobs by month and day.
CREATE INDEX jobs_user_unfinished ON jobs (user_id) WHERE status IN ('queued', 'running');
