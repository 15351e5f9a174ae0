-- Assigning a campaign's list takes seconds for a large list, so it is a job with the campaign as its
-- record (DESIGN.md principle 3): POST /v1/campaigns, and a PATCH of an assignment field, answer 202
-- and a worker freezes the assignments (src/campaigns/assigning.ts).
--   status              assigning (a job is computing the assignments), ready, or failed (a new
--                       campaign whose first assignment failed: it has none);
--   assignment_version  bumped by each request to (re)assign: the job carries it, and a job of an older
--                       request finds a newer version and does nothing;
--   pending_assignment  the assignment fields a PATCH asked for, applied by the job together with the
--                       assignments they give: until then the campaign keeps its fields and assignments,
--                       and keeps them when the job fails;
--   assignment_error    why the last assignment failed (null once one succeeds);
--   assigned_at         when the assignments were last frozen (null: never).
-- Campaigns created before this migration were assigned synchronously: they are ready.
ALTER TABLE "campaign" ADD COLUMN "status" TEXT NOT NULL DEFAULT 'ready';
ALTER TABLE "campaign" ALTER COLUMN "status" SET DEFAULT 'assigning';
ALTER TABLE "campaign" ADD COLUMN "assignment_version" INTEGER NOT NULL DEFAULT 1;
ALTER TABLE "campaign" ADD COLUMN "pending_assignment" JSONB;
ALTER TABLE "campaign" ADD COLUMN "assignment_error" TEXT;
ALTER TABLE "campaign" ADD COLUMN "assigned_at" TIMESTAMPTZ(3);
UPDATE "campaign" SET "assigned_at" = "updated_at";

-- The job-recovery sweep looks for campaigns still assigning (src/jobs/recovery.ts); a partial index on
-- just those, as for the other unfinished records (migration 20261127150000).
CREATE INDEX "campaign_assigning_idx" ON "campaign"("created_at") WHERE "status" = 'assigning';
