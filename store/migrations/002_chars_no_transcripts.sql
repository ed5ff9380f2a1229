-- Per-character readings on every line (Segment.chars), and no transcripts table: it was
-- written when a job finished and never read; a transcript is its job's segments in order.

ALTER TABLE segments ADD COLUMN chars jsonb NOT NULL DEFAULT '[]';

DROP TABLE transcripts;
