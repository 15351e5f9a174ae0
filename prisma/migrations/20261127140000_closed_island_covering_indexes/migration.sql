-- The metrics of a run read the closed islands that end at a few periods just before it. Islands of a
-- first build lie in user order, so those few periods' rows sit on pages all over the partition: a
-- day's run read some 26,000 pages for 150,000 rows. Carrying the columns the end counts aggregate in
-- the end_p index lets them read the index alone (it loses btree deduplication: about 6 times the
-- size of the plain index, which is why the start_p index, whose reads are of recent islands, stays plain).
DROP INDEX "layer_island_closed_end_p_idx";
CREATE INDEX "layer_island_closed_end_p_idx" ON "layer_island_closed"("fact_id", "grain", "end_p") INCLUDE ("start_p", "prev_end", "next_start");
