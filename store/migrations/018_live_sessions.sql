-- Live sessions (WS /v1/live): where a transcriber taking a session over resumes. Written after each
-- committed line is on the bus: up to there the audio is transcribed, the next line has that number,
-- and the tail is the end of the committed text (the model's prompt).
CREATE TABLE live_sessions (
    job_id          text PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    committed_until double precision NOT NULL DEFAULT 0,
    next_line       integer NOT NULL DEFAULT 0,
    tail            text NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL DEFAULT now()
);
