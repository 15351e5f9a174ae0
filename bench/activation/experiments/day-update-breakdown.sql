-- Session 5: the day grain's UPDATE … RETURNING as shipped, with EXPLAIN (ANALYZE, BUFFERS, WAL), rolled back.
-- On a kept bench database with the activity of 2026-07-03 inserted but not processed (fact_id 1).
-- Run once after a CHECKPOINT and once right after (no full-page images): 4.96 s against 4.25 s on
-- session 5's machine; finding the rows (the nested loop) took 1.5 s of it.
-- psql -d aa_bench_activation -f day-update-breakdown.sql

\ir day-0703-setup.sql
EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF)
UPDATE layer_island i
       SET end_p = CASE WHEN au.m = i.end_p + 1 THEN au.m ELSE i.end_p END,
           next_start = CASE WHEN au.m = i.end_p + 1 THEN NULL ELSE au.m END
       FROM au
       WHERE i.fact_id = 1 AND i.grain = 0 AND i.next_start IS NULL AND i.user_key = au.user_key;
ROLLBACK;
