-- Shared by the session 5 experiments (\ir'd first): opens a transaction (each script rolls it back) and
-- makes the day's users of 2026-07-03 (au, with their new period m) as a run of that day does, on a
-- kept bench database whose activity of that day is inserted but not processed (fact_id 1).
\timing on
BEGIN;
SET LOCAL work_mem = '256MB';
CREATE TEMP TABLE np ON COMMIT DROP AS SELECT a.user_key, a.activity_date - DATE '1970-01-01' AS p FROM activity_day a WHERE a.fact_id = 1 AND a.activity_date = '2026-07-03';
CREATE TEMP TABLE au ON COMMIT DROP AS SELECT user_key, min(p) AS m FROM np GROUP BY user_key ORDER BY user_key;
ANALYZE au;
-- The latest islands found through the user-keyed index, as the shipped UPDATE does.
SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;
