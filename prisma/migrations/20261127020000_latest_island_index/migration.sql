-- Each user's latest island per fact and grain: the status, FirstLast and audiences of the watermark's
-- period read exactly these rows. A partial index, which schema.prisma cannot express: keep it here.
CREATE INDEX "layer_island_latest_idx" ON "layer_island"("fact_id", "grain", "user_key") WHERE "next_start" IS NULL;
