-- The metrics of a run read the closed islands that end (or start) at a few periods just before it.
-- Islands of a first build lie in user order, so those few periods' rows sit on pages all over the
-- partition: a day's run read some 26,000 pages for 150,000 rows. Carrying the columns the metrics
-- aggregate in the indexes lets them read the index alone.
DROP INDEX "layer_island_closed_end_p_idx";
CREATE INDEX "layer_island_closed_end_p_idx" ON "layer_island_closed"("fact_id", "grain", "end_p") INCLUDE ("start_p", "prev_end", "next_start");
DROP INDEX "layer_island_closed_start_p_idx";
CREATE INDEX "layer_island_closed_start_p_idx" ON "layer_island_closed"("fact_id", "grain", "start_p") INCLUDE ("end_p", "prev_end");
