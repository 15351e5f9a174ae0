-- CreateTable
CREATE TABLE "campaign" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "materialization_id" UUID NOT NULL,
    "audience_id" UUID NOT NULL,
    "as_of" DATE NOT NULL,
    "grain" TEXT NOT NULL,
    "goal_fact_id" INTEGER NOT NULL,
    "goal_fact" TEXT NOT NULL,
    "goal_metric" TEXT NOT NULL,
    "goal_window_periods" INTEGER NOT NULL,
    "holdout_percent" DOUBLE PRECISION NOT NULL,
    "salt" TEXT NOT NULL,
    "launch_date" DATE NOT NULL,
    "global_control_percent" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "global_control_salt" TEXT,
    "treatment_count" INTEGER NOT NULL DEFAULT 0,
    "control_count" INTEGER NOT NULL DEFAULT 0,
    "global_control_count" INTEGER NOT NULL DEFAULT 0,
    "locked_at" TIMESTAMPTZ(3),
    "locked_reason" TEXT,
    "data_version" INTEGER NOT NULL DEFAULT 0,
    "metrics_pending_from" DATE,
    "metrics_full_refresh" BOOLEAN NOT NULL DEFAULT false,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "campaign_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "campaign_created_at_idx" ON "campaign"("created_at");
CREATE INDEX "campaign_goal_fact_id_idx" ON "campaign"("goal_fact_id");

-- CreateTable
CREATE TABLE "campaign_assignment" (
    "campaign_id" UUID NOT NULL,
    "user_key" INTEGER NOT NULL,
    "arm" TEXT NOT NULL,
    "bucket" INTEGER NOT NULL,
    "state" TEXT NOT NULL,
    "inactivity_periods" INTEGER NOT NULL,
    "window_days" INTEGER NOT NULL DEFAULT 0,
    "covariate_days" INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT "campaign_assignment_pkey" PRIMARY KEY ("campaign_id","user_key")
);
-- Members' window and covariate days are updated in place after each processing run (no indexed
-- column changes): room on each page keeps those updates HOT.
ALTER TABLE "campaign_assignment" SET (fillfactor = 85);

-- CreateTable
CREATE TABLE "campaign_send" (
    "campaign_id" UUID NOT NULL,
    "user_key" INTEGER NOT NULL,
    "channel" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "sent_at" TIMESTAMPTZ(3) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "campaign_send_pkey" PRIMARY KEY ("campaign_id","user_key","channel","status")
);

-- CreateTable
CREATE TABLE "campaign_outcome" (
    "campaign_id" UUID NOT NULL,
    "outcome_id" TEXT NOT NULL,
    "user_key" INTEGER NOT NULL,
    "name" TEXT NOT NULL,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL,
    "value" DOUBLE PRECISION,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "campaign_outcome_pkey" PRIMARY KEY ("campaign_id","outcome_id")
);
CREATE INDEX "campaign_outcome_campaign_id_user_key_idx" ON "campaign_outcome"("campaign_id", "user_key");

-- CreateTable
CREATE TABLE "campaign_result" (
    "campaign_id" UUID NOT NULL,
    "result" JSONB NOT NULL,
    "data_version" INTEGER NOT NULL,
    "computed_at" TIMESTAMPTZ(3) NOT NULL,
    "duration_ms" INTEGER NOT NULL,
    "error" TEXT,
    "failed_at" TIMESTAMPTZ(3),
    CONSTRAINT "campaign_result_pkey" PRIMARY KEY ("campaign_id")
);

-- CreateTable
CREATE TABLE "control_group" (
    "id" INTEGER NOT NULL,
    "percent" DOUBLE PRECISION NOT NULL,
    "salt" TEXT NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "control_group_pkey" PRIMARY KEY ("id")
);

-- The campaign assignment hash of the spec, shared with src/campaigns/assignment.ts (tested equal):
-- the first 4 bytes of sha256(utf8(salt || ':' || user_id)) as a big-endian uint32, mod 10000.
-- STABLE (as convert_to is) and not STRICT, so the planner inlines it: five times faster than a call.
CREATE FUNCTION aa_assignment_bucket(salt TEXT, user_id TEXT) RETURNS INTEGER
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT ((('x' || encode(substr(sha256(convert_to(salt || ':' || user_id, 'UTF8')), 1, 4), 'hex'))::bit(32)::bigint) % 10000)::integer
$$;
