-- Each user's latest island (next_start IS NULL) changes with nearly every day of activity; the other
-- ("closed") islands change only with late data. layer_island is split by that into two partitions:
--   layer_island_open   one row per user, fact and grain; no index holds end_p or next_start, so a
--                       day that extends an island is a HOT update (no index writes), and the spare
--                       room of fillfactor 70 keeps those updates on their page;
--   layer_island_closed the rest, with the end_p / start_p / next_start indexes that metrics and
--                       past-period queries use.
-- Queries on layer_island are unchanged: "next_start IS NULL" reads only the open partition, and an
-- island that gets its next_start moves to the closed one. Metrics read the end periods of open islands
-- from layer_open_end, which every processing run keeps in step (src/activation/postgres/open-ends.ts).
-- A partition key that is an expression rules out a primary key on layer_island itself: each partition
-- has a unique index on the key schema.prisma declares, (fact_id, grain, user_key, start_p).

ALTER TABLE "layer_island" RENAME TO "layer_island_unpartitioned";

CREATE TABLE "layer_island" (
    "fact_id" INTEGER NOT NULL,
    "grain" SMALLINT NOT NULL,
    "user_key" INTEGER NOT NULL,
    "start_p" INTEGER NOT NULL,
    "end_p" INTEGER NOT NULL,
    "prev_end" INTEGER,
    "next_start" INTEGER,
    "active_before" INTEGER NOT NULL,
    "first_p" INTEGER NOT NULL
) PARTITION BY LIST (("next_start" IS NULL));

CREATE TABLE "layer_island_open" PARTITION OF "layer_island" FOR VALUES IN (TRUE) WITH (fillfactor = 70);
CREATE TABLE "layer_island_closed" PARTITION OF "layer_island" FOR VALUES IN (FALSE);

INSERT INTO "layer_island" SELECT "fact_id", "grain", "user_key", "start_p", "end_p", "prev_end", "next_start", "active_before", "first_p"
FROM "layer_island_unpartitioned" ORDER BY "fact_id", "grain", "user_key", "start_p";
DROP TABLE "layer_island_unpartitioned";

CREATE UNIQUE INDEX "layer_island_open_key" ON "layer_island_open"("fact_id", "grain", "user_key", "start_p");
CREATE INDEX "layer_island_open_start_p_idx" ON "layer_island_open"("fact_id", "grain", "start_p");
CREATE UNIQUE INDEX "layer_island_closed_key" ON "layer_island_closed"("fact_id", "grain", "user_key", "start_p");
CREATE INDEX "layer_island_closed_end_p_idx" ON "layer_island_closed"("fact_id", "grain", "end_p");
CREATE INDEX "layer_island_closed_start_p_idx" ON "layer_island_closed"("fact_id", "grain", "start_p");
CREATE INDEX "layer_island_closed_next_start_idx" ON "layer_island_closed"("fact_id", "grain", "next_start");

-- Open islands counted by end period, with the attributes the metrics' end events need.
CREATE TABLE "layer_open_end" (
    "fact_id" INTEGER NOT NULL,
    "grain" SMALLINT NOT NULL,
    "end_p" INTEGER NOT NULL,
    "c_all" INTEGER NOT NULL,
    "c_len2" INTEGER NOT NULL,
    "c_len3" INTEGER NOT NULL,
    "c_first_single" INTEGER NOT NULL,
    "c_react_single" INTEGER NOT NULL,
    CONSTRAINT "layer_open_end_pkey" PRIMARY KEY ("fact_id", "grain", "end_p")
);

INSERT INTO "layer_open_end"
SELECT "fact_id", "grain", "end_p", count(*),
       count(*) FILTER (WHERE "end_p" >= "start_p" + 1),
       count(*) FILTER (WHERE "end_p" >= "start_p" + 2),
       count(*) FILTER (WHERE "prev_end" IS NULL AND "end_p" = "start_p"),
       count(*) FILTER (WHERE "prev_end" IS NOT NULL AND "end_p" = "start_p")
FROM "layer_island_open" GROUP BY "fact_id", "grain", "end_p";
