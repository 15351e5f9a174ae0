-- CreateTable
CREATE TABLE "audience" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "fact_id" INTEGER NOT NULL,
    "grain" TEXT NOT NULL,
    "version" INTEGER NOT NULL DEFAULT 1,
    "definition" JSONB NOT NULL,
    "fact_ids" INTEGER[],
    "refresh" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "deleted_at" TIMESTAMPTZ(3),
    CONSTRAINT "audience_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "audience_created_at_idx" ON "audience"("created_at");

-- CreateTable
CREATE TABLE "audience_version" (
    "audience_id" UUID NOT NULL,
    "version" INTEGER NOT NULL,
    "definition" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "audience_version_pkey" PRIMARY KEY ("audience_id","version")
);

-- CreateTable
CREATE TABLE "materialization" (
    "id" UUID NOT NULL,
    "audience_id" UUID NOT NULL,
    "version" INTEGER NOT NULL,
    "as_of" DATE NOT NULL,
    "status" TEXT NOT NULL,
    "trigger" TEXT NOT NULL DEFAULT 'api',
    "progress" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "member_count" INTEGER,
    "error" TEXT,
    "timings" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMPTZ(3),
    "finished_at" TIMESTAMPTZ(3),
    CONSTRAINT "materialization_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "materialization_audience_id_created_at_idx" ON "materialization"("audience_id", "created_at");

-- CreateTable
CREATE TABLE "audience_member" (
    "materialization_id" UUID NOT NULL,
    "user_key" INTEGER NOT NULL,
    "state" TEXT NOT NULL,
    "previous_state" TEXT,
    "transition_segment" TEXT NOT NULL,
    "is_active" BOOLEAN NOT NULL,
    "first_active_period" DATE NOT NULL,
    "last_active_period" DATE NOT NULL,
    "inactivity_periods" INTEGER NOT NULL,
    "consecutive_active_periods" INTEGER NOT NULL,
    "last_streak_periods" INTEGER NOT NULL,
    "return_interval_periods" INTEGER,
    "last_active_state" TEXT NOT NULL,
    "active_periods_total" INTEGER NOT NULL,
    "tenure_periods" INTEGER NOT NULL,
    "growth_state" TEXT,
    CONSTRAINT "audience_member_pkey" PRIMARY KEY ("materialization_id","user_key")
);

-- CreateTable
CREATE TABLE "webhook" (
    "id" UUID NOT NULL,
    "url" TEXT NOT NULL,
    "events" TEXT[],
    "secret" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "disabled_at" TIMESTAMPTZ(3),
    CONSTRAINT "webhook_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_delivery" (
    "id" UUID NOT NULL,
    "webhook_id" UUID NOT NULL,
    "event" TEXT NOT NULL,
    "payload" JSONB NOT NULL,
    "status" TEXT NOT NULL,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "response_code" INTEGER,
    "error" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_attempt_at" TIMESTAMPTZ(3),
    "delivered_at" TIMESTAMPTZ(3),
    CONSTRAINT "webhook_delivery_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "webhook_delivery_webhook_id_created_at_idx" ON "webhook_delivery"("webhook_id", "created_at");

-- AddForeignKey
ALTER TABLE "audience_version" ADD CONSTRAINT "audience_version_audience_id_fkey" FOREIGN KEY ("audience_id") REFERENCES "audience"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "materialization" ADD CONSTRAINT "materialization_audience_id_fkey" FOREIGN KEY ("audience_id") REFERENCES "audience"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "webhook_delivery" ADD CONSTRAINT "webhook_delivery_webhook_id_fkey" FOREIGN KEY ("webhook_id") REFERENCES "webhook"("id") ON DELETE CASCADE ON UPDATE CASCADE;
