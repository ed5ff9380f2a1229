-- What a job's damaged input lost (Final.warnings): the job succeeded with what it heard.

ALTER TABLE jobs ADD COLUMN warnings jsonb NOT NULL DEFAULT '[]';
