-- Session 5: the day grain's UPDATE … RETURNING as shipped, with EXPLAIN (ANALYZE, BUFFERS, WAL), rolled back.
-- On a kept bench database with the activity of 2026-07-03 inserted but not processed (fact_id 1).
-- Run once after a CHECKPOINT and once right after (no full-page images): 4.96 s against 4.25 s on
-- session 5's machine; finding the rows (the nested loop) took 1.5 s of it.
-- psql -d aa_bench_activation -f day-update-breakdown.sql

\timing on
BEGIN;
SET LOCAL work_mem=$$256MB$$; 
CREATE TEMP TABLE np ON COMMIT DROP AS SELECT a.user_key, a.activity_date - DATE '1970-01-01' AS p FROM activity_day a WHERE a.fact_id = 1 AND a.activity_date = '2026-07-03';
CREATE TEMP TABLE au ON COMMIT DROP AS SELECT user_key, min(p) AS m FROM np GROUP BY user_key ORDER BY user_key;
ANALYZE au;
SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;
EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF)
UPDATE layer_island i
       SET end_p = CASE WHEN au.m = i.end_p + 1 THEN au.m ELSE i.end_p END,
           next_start = CASE WHEN au.m = i.end_p + 1 THEN NULL ELSE au.m END
       FROM au
       WHERE i.fact_id = 1 AND i.grain = 0 AND i.next_start IS NULL AND i.user_key = au.user_key;
ROLLBACK;
