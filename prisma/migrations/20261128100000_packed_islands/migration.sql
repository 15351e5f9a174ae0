-- The islands packed by chunks of 1,024 users (docs/packed-layer.md). As rows, a day's run changed each
-- active user's latest island at three grains, 9-13 µs of PostgreSQL work per row; packed, it reads and
-- rewrites each grain's few hundred chunk rows by binary COPY (src/activation/postgres/day-packs.ts).
--
-- layer_latest_pack  one row per fact, grain and chunk (chunk = user_key >> 10, slot = user_key & 1023):
--                    s[slot + 1] packs the user's latest island, start | end | previous end | active
--                    periods before, 16 bits each from the high end (a previous end of 65535: none;
--                    -1, every bit set: no island at this grain);
-- layer_latest_first the same rows' first periods, fp[slot + 1]: apart, because they change only for
--                    users new to the fact, and a day's run need not write them again.
-- layer_closed_pack  the islands with a next island: rows of one (grain, next island's start, chunk),
--                    several when runs closed islands into one period at different times (week and month
--                    grains), each naming its users in uk (ascending) and keyed by its lowest one.
-- Periods count days, ISO weeks or months from 1970: 16 bits hold every date up to 2149-06-05 (day
-- 65,534), the latest date ingestion accepts. layer_island is now a view over both, with the columns the
-- table had, so that reads stay SQL; processing writes the packs only.

-- The arrays are nullable as Prisma declares scalar lists; every writer sets them.
CREATE TABLE "layer_latest_pack" (
    "fact_id" INTEGER NOT NULL,
    "grain" SMALLINT NOT NULL,
    "chunk" INTEGER NOT NULL,
    "s" BIGINT[],
    CONSTRAINT "layer_latest_pack_pkey" PRIMARY KEY ("fact_id", "grain", "chunk")
);

CREATE TABLE "layer_latest_first" (
    "fact_id" INTEGER NOT NULL,
    "grain" SMALLINT NOT NULL,
    "chunk" INTEGER NOT NULL,
    "fp" INTEGER[],
    CONSTRAINT "layer_latest_first_pkey" PRIMARY KEY ("fact_id", "grain", "chunk")
);

CREATE TABLE "layer_closed_pack" (
    "fact_id" INTEGER NOT NULL,
    "grain" SMALLINT NOT NULL,
    "next_start" INTEGER NOT NULL,
    "first_key" INTEGER NOT NULL,
    "chunk" INTEGER NOT NULL,
    "uk" INTEGER[],
    "s" BIGINT[],
    "fp" INTEGER[],
    CONSTRAINT "layer_closed_pack_pkey" PRIMARY KEY ("fact_id", "grain", "next_start", "first_key")
);
-- One user's closed islands (timelines, late data): the rows of its chunk.
CREATE INDEX "layer_closed_pack_chunk_idx" ON "layer_closed_pack"("fact_id", "grain", "chunk", "next_start");

-- The arrays are rewritten whole and hold packed integers that compress poorly: stored uncompressed.
ALTER TABLE "layer_latest_pack" ALTER COLUMN "s" SET STORAGE EXTERNAL;
ALTER TABLE "layer_latest_first" ALTER COLUMN "fp" SET STORAGE EXTERNAL;
ALTER TABLE "layer_closed_pack" ALTER COLUMN "uk" SET STORAGE EXTERNAL, ALTER COLUMN "s" SET STORAGE EXTERNAL, ALTER COLUMN "fp" SET STORAGE EXTERNAL;

-- An island's packed value. Inlined by the planner (a single expression).
CREATE FUNCTION aa_island_pack(start_p INTEGER, end_p INTEGER, prev_end INTEGER, active_before INTEGER) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ((start_p::BIGINT & 65535) << 48) | ((end_p::BIGINT & 65535) << 32)
       | ((COALESCE(prev_end, 65535)::BIGINT & 65535) << 16) | (active_before::BIGINT & 65535)
$$;

CREATE TEMP TABLE "latest_chunk" AS SELECT DISTINCT fact_id, grain, user_key >> 10 AS chunk FROM layer_island WHERE next_start IS NULL;

INSERT INTO "layer_latest_pack" ("fact_id", "grain", "chunk", "s")
SELECT k.fact_id, k.grain, k.chunk, array_agg(COALESCE(aa_island_pack(i.start_p, i.end_p, i.prev_end, i.active_before), -1) ORDER BY sl)
FROM latest_chunk k
CROSS JOIN generate_series(0, 1023) sl
LEFT JOIN layer_island i ON i.next_start IS NULL AND i.fact_id = k.fact_id AND i.grain = k.grain AND i.user_key = (k.chunk << 10) + sl
GROUP BY k.fact_id, k.grain, k.chunk;

INSERT INTO "layer_latest_first" ("fact_id", "grain", "chunk", "fp")
SELECT k.fact_id, k.grain, k.chunk, array_agg(COALESCE(i.first_p, -1) ORDER BY sl)
FROM latest_chunk k
CROSS JOIN generate_series(0, 1023) sl
LEFT JOIN layer_island i ON i.next_start IS NULL AND i.fact_id = k.fact_id AND i.grain = k.grain AND i.user_key = (k.chunk << 10) + sl
GROUP BY k.fact_id, k.grain, k.chunk;

DROP TABLE "latest_chunk";

INSERT INTO "layer_closed_pack" ("fact_id", "grain", "next_start", "first_key", "chunk", "uk", "s", "fp")
SELECT fact_id, grain, next_start, min(user_key), user_key >> 10,
       array_agg(user_key ORDER BY user_key),
       array_agg(aa_island_pack(start_p, end_p, prev_end, active_before) ORDER BY user_key),
       array_agg(first_p ORDER BY user_key)
FROM layer_island WHERE next_start IS NOT NULL
GROUP BY fact_id, grain, next_start, user_key >> 10;

DROP TABLE "layer_island";

-- Each user's latest island, decoded. A query on one user names its chunk too (chunk = user_key >> 10):
-- the planner cannot derive it from user_key.
CREATE VIEW "layer_latest_island" AS
SELECT p.fact_id, p.grain, p.chunk, (p.chunk << 10) + (u.o::INTEGER - 1) AS user_key,
       ((u.x >> 48) & 65535)::INTEGER AS start_p, ((u.x >> 32) & 65535)::INTEGER AS end_p,
       NULLIF(((u.x >> 16) & 65535)::INTEGER, 65535) AS prev_end, NULL::INTEGER AS next_start,
       (u.x & 65535)::INTEGER AS active_before, u.f AS first_p
FROM "layer_latest_pack" p JOIN "layer_latest_first" l ON l.fact_id = p.fact_id AND l.grain = p.grain AND l.chunk = p.chunk,
     unnest(p.s, l.fp) WITH ORDINALITY AS u(x, f, o)
WHERE u.x <> -1;

-- The islands with a next island, decoded. next_start is the row's: a condition on it reads only the
-- rows it selects (the primary key), before any array is unpacked.
CREATE VIEW "layer_closed_island" AS
SELECT c.fact_id, c.grain, c.chunk, u.k AS user_key,
       ((u.x >> 48) & 65535)::INTEGER AS start_p, ((u.x >> 32) & 65535)::INTEGER AS end_p,
       NULLIF(((u.x >> 16) & 65535)::INTEGER, 65535) AS prev_end, c.next_start,
       (u.x & 65535)::INTEGER AS active_before, u.f AS first_p
FROM "layer_closed_pack" c, unnest(c.uk, c.s, c.fp) AS u(k, x, f);

-- Every island, as the table of that name held them.
CREATE VIEW "layer_island" AS
SELECT * FROM "layer_latest_island" UNION ALL SELECT * FROM "layer_closed_island";
