-- The workers' recovery sweep (src/jobs/recovery.ts) looks for the campaigns whose stored results are
-- behind their data_version. It compared campaign.data_version with campaign_result.data_version, a
-- join no index serves, so every sweep read every campaign (and every sweep runs each minute).
--   results_version  the data_version of the stored results (campaign_result.data_version), kept on the
--                    campaign so that "behind" is a condition on one row: written after the results
--                    are stored (never ahead of them: should it lag, the campaign only looks behind and
--                    the sweep's recomputation writes it again), cleared when an assignment drops them.
-- The partial index holds just the campaigns behind, so a sweep reads those and no other.
ALTER TABLE "campaign" ADD COLUMN "results_version" INTEGER;
UPDATE "campaign" c SET "results_version" = r."data_version" FROM "campaign_result" r WHERE r."campaign_id" = c."id";
CREATE INDEX "campaign_results_behind_idx" ON "campaign"("created_at")
  WHERE "status" = 'ready' AND "data_version" > COALESCE("results_version", -1) AND "data_version" > COALESCE("results_failed_version", -1);
