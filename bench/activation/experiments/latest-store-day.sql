-- One day (2026-07-01) of the latest-store prototype, see latest-store-setup.sql.

\set QUIET on
BEGIN;
SET LOCAL work_mem='256MB';
SET LOCAL jit = off;
CHECKPOINT;
SELECT pg_current_wal_lsn() AS lsn0 \gset
\timing on
CREATE TEMP TABLE au ON COMMIT DROP AS SELECT user_key FROM activity_day WHERE fact_id=1 AND activity_date='2026-07-01' ORDER BY user_key;
ANALYZE au;
SET LOCAL enable_hashjoin=off; SET LOCAL enable_mergejoin=off;
CREATE TEMP TABLE touched ON COMMIT DROP AS WITH changed AS (
 UPDATE layer_latest l SET
   d_start = CASE WHEN o.d_end >= 20634 THEN o.d_start ELSE 20635 END,
   d_end = 20635,
   d_prev_end = CASE WHEN o.d_end >= 20634 THEN o.d_prev_end ELSE o.d_end END,
   d_ab = CASE WHEN o.d_end >= 20634 THEN o.d_ab ELSE o.d_ab + o.d_end - o.d_start + 1 END,
   w_start = CASE WHEN o.w_end >= 2947 THEN o.w_start ELSE 2948 END,
   w_end = 2948,
   w_prev_end = CASE WHEN o.w_end >= 2947 THEN o.w_prev_end ELSE o.w_end END,
   w_ab = CASE WHEN o.w_end >= 2947 THEN o.w_ab ELSE o.w_ab + o.w_end - o.w_start + 1 END,
   m_start = CASE WHEN o.m_end >= 677 THEN o.m_start ELSE 678 END,
   m_end = 678,
   m_prev_end = CASE WHEN o.m_end >= 677 THEN o.m_prev_end ELSE o.m_end END,
   m_ab = CASE WHEN o.m_end >= 677 THEN o.m_ab ELSE o.m_ab + o.m_end - o.m_start + 1 END
 FROM au JOIN layer_latest o ON o.fact_id = 1 AND o.user_key = au.user_key
 WHERE l.ctid = o.ctid
 RETURNING o.*)
SELECT * FROM changed;
SET LOCAL enable_hashjoin=on; SET LOCAL enable_mergejoin=on;
INSERT INTO layer_closed (fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p)
SELECT 1, 0, user_key, d_start, d_end, d_prev_end, 20635, d_ab, d_first FROM touched WHERE d_end < 20634
UNION ALL SELECT 1, 1, user_key, w_start, w_end, w_prev_end, 2948, w_ab, w_first FROM touched WHERE w_end < 2947
UNION ALL SELECT 1, 2, user_key, m_start, m_end, m_prev_end, 678, m_ab, m_first FROM touched WHERE m_end < 677
ORDER BY 3;
INSERT INTO layer_latest SELECT 1, au.user_key, 20635, 20635, NULL, 0, 20635, 2948, 2948, NULL, 0, 2948, 678, 678, NULL, 0, 678 FROM au WHERE NOT EXISTS (SELECT 1 FROM touched t WHERE t.user_key = au.user_key);
\timing off
SELECT pg_size_pretty(pg_current_wal_lsn() - :'lsn0') AS wal;
\timing on
ROLLBACK;
