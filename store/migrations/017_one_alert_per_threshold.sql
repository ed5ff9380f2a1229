-- One cost alert per threshold per UTC day: a projected rise and the rise itself cross one threshold, so
-- whichever is noticed first is the day's alert for it (its kind says which). Where a day holds both,
-- the first stays.
DELETE FROM cost_alerts a USING cost_alerts b
WHERE a.day = b.day AND a.id > b.id AND (a.kind IN ('rise', 'projected_rise')) = (b.kind IN ('rise', 'projected_rise'));
ALTER TABLE cost_alerts ADD COLUMN threshold text
    GENERATED ALWAYS AS (CASE WHEN kind IN ('rise', 'projected_rise') THEN 'rise' ELSE 'daily' END) STORED;
ALTER TABLE cost_alerts ADD CONSTRAINT cost_alerts_one_per_threshold UNIQUE (day, threshold);
-- It replaces the unique (day, kind): a second unique index would make a racing claim fail instead of
-- finding the alert stored.
ALTER TABLE cost_alerts DROP CONSTRAINT cost_alerts_day_kind_key;
