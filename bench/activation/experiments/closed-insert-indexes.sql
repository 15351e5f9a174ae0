-- Session 5: inserting the ~92k islands a day closes into layer_island_closed, with some of its indexes
-- dropped inside the (rolled back) transaction. psql -d aa_bench_activation -v 'DROPS=DROP INDEX layer_island_closed_key;' -f closed-insert-indexes.sql
-- Measured after a CHECKPOINT on session 5's machine: all four indexes 2.87 s; without the unique key 1.25 s;
-- without the three period indexes 1.67 s; without any 0.29 s.

\timing on
BEGIN;
SET LOCAL work_mem='256MB';
CREATE TEMP TABLE np ON COMMIT DROP AS SELECT a.user_key, a.activity_date - DATE '1970-01-01' AS p FROM activity_day a WHERE a.fact_id = 1 AND a.activity_date = '2026-07-03';
CREATE TEMP TABLE au ON COMMIT DROP AS SELECT user_key, min(p) AS m FROM np GROUP BY user_key ORDER BY user_key;
ANALYZE au;
SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;
CREATE TEMP TABLE cur ON COMMIT DROP AS SELECT i.ctid AS tid, au.user_key, au.m, i.start_p, i.end_p, i.prev_end, i.active_before, i.first_p
  FROM au JOIN layer_island_open i ON i.fact_id = 1 AND i.grain = 0 AND i.user_key = au.user_key;
CHECKPOINT;
:DROPS
EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF) INSERT INTO layer_island_closed (fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p)
  SELECT 1, 0, user_key, start_p, end_p, prev_end, m, active_before, first_p FROM cur WHERE m > end_p + 1 ORDER BY user_key;
ROLLBACK;
