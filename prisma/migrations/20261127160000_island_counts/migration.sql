-- Every island counted by start period and by end period, under each condition the metrics' events
-- need (src/activation/postgres/island-counts.ts). Metrics read these few rows instead of the islands
-- that start or end near the periods they recompute, and every processing run keeps them in step.
-- They replace layer_open_end (the same end counts, for latest islands only), and the closed
-- partition's end_p index no longer needs to cover the columns those counts read: it goes back to a
-- plain index (deduplicated, a fraction of the size), which status and activation queries still use.

CREATE TABLE "layer_start_count" (
    "fact_id" INTEGER NOT NULL,
    "grain" SMALLINT NOT NULL,
    "start_p" INTEGER NOT NULL,
    "c_first" INTEGER NOT NULL,
    "c_react" INTEGER NOT NULL,
    "c_all" INTEGER NOT NULL,
    "c_len2" INTEGER NOT NULL,
    "c_len3" INTEGER NOT NULL,
    "c_first_len2" INTEGER NOT NULL,
    "c_react_len2" INTEGER NOT NULL,
    "c_gap_gt2" INTEGER NOT NULL,
    "c_gap_le6" INTEGER NOT NULL,
    "c_gap_7_29" INTEGER NOT NULL,
    "c_gap_ge30" INTEGER NOT NULL,
    "c_gap_le7" INTEGER NOT NULL,
    "c_gap_8_30" INTEGER NOT NULL,
    "c_gap_ge31" INTEGER NOT NULL,
    CONSTRAINT "layer_start_count_pkey" PRIMARY KEY ("fact_id", "grain", "start_p")
);

CREATE TABLE "layer_end_count" (
    "fact_id" INTEGER NOT NULL,
    "grain" SMALLINT NOT NULL,
    "end_p" INTEGER NOT NULL,
    "c_all" INTEGER NOT NULL,
    "c_len2" INTEGER NOT NULL,
    "c_len3" INTEGER NOT NULL,
    "c_first_single" INTEGER NOT NULL,
    "c_react_single" INTEGER NOT NULL,
    "c_gap_gt2" INTEGER NOT NULL,
    "c_gap_gt7" INTEGER NOT NULL,
    "c_gap_gt30" INTEGER NOT NULL,
    "c_latest" INTEGER NOT NULL,
    CONSTRAINT "layer_end_count_pkey" PRIMARY KEY ("fact_id", "grain", "end_p")
);

INSERT INTO "layer_start_count"
SELECT "fact_id", "grain", "start_p",
       count(*) FILTER (WHERE "prev_end" IS NULL),
       count(*) FILTER (WHERE "prev_end" IS NOT NULL),
       count(*),
       count(*) FILTER (WHERE "end_p" >= "start_p" + 1),
       count(*) FILTER (WHERE "end_p" >= "start_p" + 2),
       count(*) FILTER (WHERE "prev_end" IS NULL AND "end_p" >= "start_p" + 1),
       count(*) FILTER (WHERE "prev_end" IS NOT NULL AND "end_p" >= "start_p" + 1),
       count(*) FILTER (WHERE "start_p" - "prev_end" > 2),
       count(*) FILTER (WHERE "start_p" - "prev_end" <= 6),
       count(*) FILTER (WHERE "start_p" - "prev_end" BETWEEN 7 AND 29),
       count(*) FILTER (WHERE "start_p" - "prev_end" >= 30),
       count(*) FILTER (WHERE "start_p" - "prev_end" <= 7),
       count(*) FILTER (WHERE "start_p" - "prev_end" BETWEEN 8 AND 30),
       count(*) FILTER (WHERE "start_p" - "prev_end" >= 31)
FROM "layer_island" GROUP BY "fact_id", "grain", "start_p";

INSERT INTO "layer_end_count"
SELECT "fact_id", "grain", "end_p",
       count(*),
       count(*) FILTER (WHERE "end_p" >= "start_p" + 1),
       count(*) FILTER (WHERE "end_p" >= "start_p" + 2),
       count(*) FILTER (WHERE "prev_end" IS NULL AND "end_p" = "start_p"),
       count(*) FILTER (WHERE "prev_end" IS NOT NULL AND "end_p" = "start_p"),
       count(*) FILTER (WHERE "next_start" IS NULL OR "next_start" > "end_p" + 2),
       count(*) FILTER (WHERE "next_start" IS NULL OR "next_start" > "end_p" + 7),
       count(*) FILTER (WHERE "next_start" IS NULL OR "next_start" > "end_p" + 30),
       count(*) FILTER (WHERE "next_start" IS NULL)
FROM "layer_island" GROUP BY "fact_id", "grain", "end_p";

DROP TABLE "layer_open_end";

DROP INDEX "layer_island_closed_end_p_idx";
CREATE INDEX "layer_island_closed_end_p_idx" ON "layer_island_closed"("fact_id", "grain", "end_p");
