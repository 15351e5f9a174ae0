-- Outcomes the CRM corrects (PUT /v1/campaigns/{id}/outcomes/{outcome_id}: a refund changes a
-- purchase's value) or retracts (DELETE: a conversion attributed in error): src/campaigns/outcomes.ts.
-- A retracted outcome keeps its row, marked, and is no longer counted: its outcome_id is never
-- recorded again, so a CRM's late retry of the first report cannot bring it back.
--   revision      1 as first recorded, plus one per correction that changed something;
--   corrected_at  when the last such correction was made (null: never corrected);
--   retracted_at  when it was retracted (null: counted in the results).
ALTER TABLE "campaign_outcome" ADD COLUMN "revision" INTEGER NOT NULL DEFAULT 1;
ALTER TABLE "campaign_outcome" ADD COLUMN "corrected_at" TIMESTAMPTZ(3);
ALTER TABLE "campaign_outcome" ADD COLUMN "retracted_at" TIMESTAMPTZ(3);

-- Every revision a correction replaced, as it was and from when to when it stood: analysts see which
-- numbers changed. Written only by corrections (rare), read one outcome at a time by its key.
CREATE TABLE "campaign_outcome_revision" (
    "campaign_id" UUID NOT NULL,
    "outcome_id" TEXT NOT NULL,
    "revision" INTEGER NOT NULL,
    "user_key" INTEGER NOT NULL,
    "name" TEXT NOT NULL,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL,
    "value" DOUBLE PRECISION,
    "recorded_at" TIMESTAMPTZ(3) NOT NULL,
    "replaced_at" TIMESTAMPTZ(3) NOT NULL,
    CONSTRAINT "campaign_outcome_revision_pkey" PRIMARY KEY ("campaign_id","outcome_id","revision")
);
