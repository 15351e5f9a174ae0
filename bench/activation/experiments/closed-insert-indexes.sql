-- Session 5: inserting the ~92k islands a day closes into layer_island_closed, with some of its indexes
-- dropped inside the (rolled back) transaction. psql -d aa_bench_activation -v 'DROPS=DROP INDEX layer_island_closed_key;' -f closed-insert-indexes.sql
-- Measured after a CHECKPOINT on session 5's machine: all four indexes 2.87 s; without the unique key 1.25 s;
-- without the three period indexes 1.67 s; without any 0.29 s.

\ir day-0703-setup.sql
CREATE TEMP TABLE cur ON COMMIT DROP AS SELECT i.ctid AS tid, au.user_key, au.m, i.start_p, i.end_p, i.prev_end, i.active_before, i.first_p
  FROM au JOIN layer_island_open i ON i.fact_id = 1 AND i.grain = 0 AND i.user_key = au.user_key;
CHECKPOINT;
:DROPS
EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF) INSERT INTO layer_island_closed (fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p)
  SELECT 1, 0, user_key, start_p, end_p, prev_end, m, active_before, first_p FROM cur WHERE m > end_p + 1 ORDER BY user_key;
ROLLBACK;
