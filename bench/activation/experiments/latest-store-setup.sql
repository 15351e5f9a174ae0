-- Prototype of a latest-state store with one row per user for all three grains (README, "Why 1.5 s is
-- out of reach of this layout"). Not used by the service. To measure it, on a copy of a kept bench
-- database (`npm run bench -- activation --no-baselines --no-flat --keep`) with the activity of
-- 2026-07-01 inserted (bench/activation/generate.ts, insertActivity(pool, factId, 1, 1)):
--   psql -U postgres <db> -f latest-store-setup.sql      (builds layer_latest and a copy of the closed islands with their four indexes)
--   psql -U postgres <db> -f latest-store-day.sql        (one day for every grain, timed statement by statement)
-- Period numbers are those of the bench's dates: day 20635 = 2026-07-01, week 2948, month 678.

\timing on
CREATE TABLE layer_latest (
  fact_id int NOT NULL, user_key int NOT NULL,
  d_start int, d_end int, d_prev_end int, d_ab int, d_first int,
  w_start int, w_end int, w_prev_end int, w_ab int, w_first int,
  m_start int, m_end int, m_prev_end int, m_ab int, m_first int,
  PRIMARY KEY (fact_id, user_key)) WITH (fillfactor = 70);
INSERT INTO layer_latest
SELECT d.fact_id, d.user_key, d.start_p, d.end_p, d.prev_end, d.active_before, d.first_p,
       w.start_p, w.end_p, w.prev_end, w.active_before, w.first_p,
       m.start_p, m.end_p, m.prev_end, m.active_before, m.first_p
FROM layer_island_open d JOIN layer_island_open w ON w.fact_id = d.fact_id AND w.grain = 1 AND w.user_key = d.user_key
JOIN layer_island_open m ON m.fact_id = d.fact_id AND m.grain = 2 AND m.user_key = d.user_key
WHERE d.grain = 0 ORDER BY d.user_key;
CREATE TABLE layer_closed (LIKE layer_island_closed);
INSERT INTO layer_closed SELECT * FROM layer_island_closed ORDER BY fact_id, grain, user_key, start_p;
CREATE UNIQUE INDEX ON layer_closed (fact_id, grain, user_key, start_p);
-- The closed partition's other three indexes (session 6: measured with them, as the real one has them).
CREATE INDEX ON layer_closed (fact_id, grain, end_p);
CREATE INDEX ON layer_closed (fact_id, grain, start_p);
CREATE INDEX ON layer_closed (fact_id, grain, next_start);
VACUUM ANALYZE layer_latest; VACUUM ANALYZE layer_closed;
SELECT pg_size_pretty(pg_relation_size('layer_latest'));
