-- The romanizer's outbox mark: how many of the job's chunks have had their Partial event
-- published. Events go out after the transaction that stores the lines commits; the chunks
-- from published_chunks up to next_chunk are stored but not yet published (a crash came
-- between the two), and the next message of the job publishes them. Existing jobs published
-- theirs inside that transaction.

ALTER TABLE jobs ADD COLUMN published_chunks integer NOT NULL DEFAULT 0;
UPDATE jobs SET published_chunks = next_chunk;
