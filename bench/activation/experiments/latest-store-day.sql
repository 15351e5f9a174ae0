-- One day of the latest-store prototype, see latest-store-setup.sql. The day is 2026-07-01 unless
-- psql is given another, with its periods and the ones before them, e.g. for Friday 2026-07-03:
--   psql -v date=2026-07-03 -v d=20637 -v d1=20636 -v w=2948 -v w1=2947 -v m=678 -v m1=677 <db> -f latest-store-day.sql
\if :{?date}
\else
\set date 2026-07-01
\set d 20635
\set d1 20634
\set w 2948
\set w1 2947
\set m 678
\set m1 677
\endif

\set QUIET on
BEGIN;
SET LOCAL work_mem='256MB';
SET LOCAL jit = off;
CHECKPOINT;
SELECT pg_current_wal_lsn() AS lsn0 \gset
\timing on
CREATE TEMP TABLE au ON COMMIT DROP AS SELECT user_key FROM activity_day WHERE fact_id=1 AND activity_date=:'date' ORDER BY user_key;
ANALYZE au;
SET LOCAL enable_hashjoin=off; SET LOCAL enable_mergejoin=off;
CREATE TEMP TABLE touched ON COMMIT DROP AS WITH changed AS (
 UPDATE layer_latest l SET
   d_start = CASE WHEN o.d_end >= :d1 THEN o.d_start ELSE :d END,
   d_end = :d,
   d_prev_end = CASE WHEN o.d_end >= :d1 THEN o.d_prev_end ELSE o.d_end END,
   d_ab = CASE WHEN o.d_end >= :d1 THEN o.d_ab ELSE o.d_ab + o.d_end - o.d_start + 1 END,
   w_start = CASE WHEN o.w_end >= :w1 THEN o.w_start ELSE :w END,
   w_end = :w,
   w_prev_end = CASE WHEN o.w_end >= :w1 THEN o.w_prev_end ELSE o.w_end END,
   w_ab = CASE WHEN o.w_end >= :w1 THEN o.w_ab ELSE o.w_ab + o.w_end - o.w_start + 1 END,
   m_start = CASE WHEN o.m_end >= :m1 THEN o.m_start ELSE :m END,
   m_end = :m,
   m_prev_end = CASE WHEN o.m_end >= :m1 THEN o.m_prev_end ELSE o.m_end END,
   m_ab = CASE WHEN o.m_end >= :m1 THEN o.m_ab ELSE o.m_ab + o.m_end - o.m_start + 1 END
 FROM au JOIN layer_latest o ON o.fact_id = 1 AND o.user_key = au.user_key
 WHERE l.ctid = o.ctid
 RETURNING o.*)
SELECT * FROM changed;
SET LOCAL enable_hashjoin=on; SET LOCAL enable_mergejoin=on;
INSERT INTO layer_closed (fact_id, grain, user_key, start_p, end_p, prev_end, next_start, active_before, first_p)
SELECT 1, 0, user_key, d_start, d_end, d_prev_end, :d, d_ab, d_first FROM touched WHERE d_end < :d1
UNION ALL SELECT 1, 1, user_key, w_start, w_end, w_prev_end, :w, w_ab, w_first FROM touched WHERE w_end < :w1
UNION ALL SELECT 1, 2, user_key, m_start, m_end, m_prev_end, :m, m_ab, m_first FROM touched WHERE m_end < :m1
ORDER BY 3;
INSERT INTO layer_latest SELECT 1, au.user_key, :d, :d, NULL, 0, :d, :w, :w, NULL, 0, :w, :m, :m, NULL, 0, :m FROM au WHERE NOT EXISTS (SELECT 1 FROM touched t WHERE t.user_key = au.user_key);
\timing off
SELECT pg_size_pretty(pg_current_wal_lsn() - :'lsn0') AS wal;
\timing on
ROLLBACK;
