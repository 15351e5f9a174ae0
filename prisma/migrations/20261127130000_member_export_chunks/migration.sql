-- A finished materialisation's members, rendered once as NDJSON and CSV lines in user order and kept
-- in chunks of a few thousand lines: the list is frozen, so its exports never change, and serving
-- them is a sequential read instead of formatting every row again on each pull.
CREATE TABLE "member_export_chunk" (
    "materialization_id" UUID NOT NULL,
    "format" TEXT NOT NULL,
    "seq" INTEGER NOT NULL,
    "row_count" INTEGER NOT NULL,
    "body" TEXT COMPRESSION lz4 NOT NULL,
    CONSTRAINT "member_export_chunk_pkey" PRIMARY KEY ("materialization_id","format","seq")
);
