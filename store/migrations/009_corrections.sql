-- Corrections and titles. A line corrected by the job's owner keeps what the speech model wrote
-- (original_text, set by the first correction and kept across later ones) and counts its
-- corrections (revision), so two windows editing one line cannot overwrite each other unseen.
-- A job keeps a title for people: an upload's file name, a link's video title.

ALTER TABLE segments ADD COLUMN original_text text;
ALTER TABLE segments ADD COLUMN revision integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN title text;
