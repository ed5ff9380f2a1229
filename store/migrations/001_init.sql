-- Jobs, chunks, segments, transcripts and the usage ledger.

CREATE TABLE jobs (
    id            text PRIMARY KEY,
    user_id       text,
    source        text NOT NULL,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'done', 'failed')),
    reason        text,
    options       jsonb NOT NULL DEFAULT '{}',
    duration      double precision,
    total_chunks  integer,
    -- The romanizer's ordered cursor: the next chunk to emit and the next line number.
    next_chunk    integer NOT NULL DEFAULT 0,
    next_segment  integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
-- "my jobs, newest first" and the operators' "what is still running".
CREATE INDEX jobs_user_created ON jobs (user_id, created_at DESC);
CREATE INDEX jobs_unfinished ON jobs (status, created_at) WHERE status IN ('queued', 'running');

CREATE TABLE chunks (
    job_id         text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq            integer NOT NULL,
    offset_s       double precision NOT NULL,
    duration_s     double precision NOT NULL,
    raw_segments   jsonb,          -- the transcriber's output, written once
    transcribed_at timestamptz,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE segments (
    job_id     text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq        integer NOT NULL,
    chunk_seq  integer NOT NULL,
    start_s    double precision NOT NULL,
    end_s      double precision NOT NULL,
    text       text NOT NULL,
    jyutping   text NOT NULL,
    yale       text NOT NULL,
    words      jsonb NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE transcripts (
    job_id         text PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    segment_count  integer NOT NULL,
    duration       double precision NOT NULL,
    text           text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per ASR call: cost per job and per day come from here.
CREATE TABLE usage (
    id              bigserial PRIMARY KEY,
    job_id          text REFERENCES jobs (id) ON DELETE SET NULL,
    user_id         text,
    chunk_seq       integer,
    backend         text NOT NULL,
    model           text NOT NULL,
    billed_seconds  double precision NOT NULL,
    cost_usd        numeric(12, 6) NOT NULL,
    cache_hit       boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_job ON usage (job_id);
CREATE INDEX usage_created ON usage (created_at);

-- Messages given up on after their last delivery, kept for operators.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    subject     text NOT NULL,
    job_id      text,
    seq         integer,
    deliveries  integer NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
