-- The goal fact's watermark a campaign's member figures (window_days, covariate_days) are as of:
-- the next refresh adds only the days after it (or recomputes members touched by late data).
ALTER TABLE "campaign" ADD COLUMN IF NOT EXISTS "metrics_through" DATE;
