-- The source cache: a job remembers the key of its input (the video's extractor and id, or the file's
-- SHA-256) together with everything that changes the transcript (streamer/replay.py). A new job with
-- the same key replays the newest finished job's transcript instead of fetching and transcribing it.
-- Purging a job clears its key (store.repo.purge_job), so it is never replayed again.
ALTER TABLE jobs ADD COLUMN source_key bytea;
CREATE INDEX jobs_source_key ON jobs (source_key, finished_at DESC) WHERE source_key IS NOT NULL;
