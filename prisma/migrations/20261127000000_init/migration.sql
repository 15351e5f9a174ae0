-- CreateTable
CREATE TABLE "fact" (
    "id" SERIAL NOT NULL,
    "name" TEXT NOT NULL,
    "timezone" TEXT NOT NULL DEFAULT 'UTC',
    "service" TEXT,
    "description" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "processed_through" DATE,
    "dirty_from" DATE,
    "running_through" DATE,
    "earliest_date" DATE,
    "latest_date" DATE,
    CONSTRAINT "fact_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "fact_name_key" ON "fact"("name");
CREATE INDEX "fact_service_idx" ON "fact"("service");

-- CreateTable
CREATE TABLE "api_key" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "hash" TEXT NOT NULL,
    "scopes" TEXT[],
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_used_at" TIMESTAMPTZ(3),
    "revoked_at" TIMESTAMPTZ(3),
    CONSTRAINT "api_key_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "api_key_hash_key" ON "api_key"("hash");

-- CreateTable
CREATE TABLE "idempotency_record" (
    "api_key_id" UUID NOT NULL,
    "key" TEXT NOT NULL,
    "route" TEXT NOT NULL,
    "request_hash" TEXT NOT NULL,
    "status_code" INTEGER NOT NULL,
    "response_body" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "idempotency_record_pkey" PRIMARY KEY ("api_key_id","key")
);
CREATE INDEX "idempotency_record_created_at_idx" ON "idempotency_record"("created_at");

-- CreateTable
CREATE TABLE "app_user" (
    "user_key" SERIAL NOT NULL,
    "external_id" TEXT COLLATE "C" NOT NULL,
    CONSTRAINT "app_user_pkey" PRIMARY KEY ("user_key")
);
CREATE UNIQUE INDEX "app_user_external_id_key" ON "app_user"("external_id");

-- CreateTable
CREATE TABLE "activity_day" (
    "fact_id" INTEGER NOT NULL,
    "activity_date" DATE NOT NULL,
    "user_key" INTEGER NOT NULL,
    "first_at" TIMESTAMPTZ(3) NOT NULL,
    "last_at" TIMESTAMPTZ(3) NOT NULL,
    CONSTRAINT "activity_day_pkey" PRIMARY KEY ("fact_id","activity_date","user_key")
);

-- CreateTable
CREATE TABLE "layer_island" (
    "fact_id" INTEGER NOT NULL,
    "grain" SMALLINT NOT NULL,
    "user_key" INTEGER NOT NULL,
    "start_p" INTEGER NOT NULL,
    "end_p" INTEGER NOT NULL,
    "prev_end" INTEGER,
    "next_start" INTEGER,
    "active_before" INTEGER NOT NULL,
    "first_p" INTEGER NOT NULL,
    CONSTRAINT "layer_island_pkey" PRIMARY KEY ("fact_id","grain","user_key","start_p")
);
CREATE INDEX "layer_island_fact_id_grain_end_p_idx" ON "layer_island"("fact_id", "grain", "end_p");
CREATE INDEX "layer_island_fact_id_grain_start_p_idx" ON "layer_island"("fact_id", "grain", "start_p");

-- CreateTable
CREATE TABLE "layer_metric" (
    "fact_id" INTEGER NOT NULL,
    "grain" SMALLINT NOT NULL,
    "period" INTEGER NOT NULL,
    "users_total" INTEGER NOT NULL,
    "active" INTEGER NOT NULL,
    "new" INTEGER NOT NULL,
    "retained" INTEGER NOT NULL,
    "reactivated" INTEGER NOT NULL,
    "inactive" INTEGER NOT NULL,
    "churned" INTEGER NOT NULL,
    "seg_new" INTEGER NOT NULL,
    "seg_new_to_retained" INTEGER NOT NULL,
    "seg_new_to_inactive" INTEGER NOT NULL,
    "seg_retained_to_retained" INTEGER NOT NULL,
    "seg_retained_to_inactive" INTEGER NOT NULL,
    "seg_reactivated_to_retained" INTEGER NOT NULL,
    "seg_reactivated_to_inactive" INTEGER NOT NULL,
    "seg_inactive_to_reactivated" INTEGER NOT NULL,
    "seg_inactive_to_inactive" INTEGER NOT NULL,
    "growth_new" INTEGER NOT NULL,
    "growth_current" INTEGER NOT NULL,
    "growth_reactivated" INTEGER NOT NULL,
    "growth_resurrected" INTEGER NOT NULL,
    "growth_at_risk_wau" INTEGER NOT NULL,
    "growth_at_risk_mau" INTEGER NOT NULL,
    "growth_dormant" INTEGER NOT NULL,
    "wau" INTEGER NOT NULL,
    "mau" INTEGER NOT NULL,
    CONSTRAINT "layer_metric_pkey" PRIMARY KEY ("fact_id","grain","period")
);

-- CreateTable
CREATE TABLE "processing_run" (
    "id" UUID NOT NULL,
    "fact_id" INTEGER NOT NULL,
    "status" TEXT NOT NULL,
    "from_date" DATE,
    "through_date" DATE NOT NULL,
    "progress" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "trigger" TEXT NOT NULL DEFAULT 'api',
    "error" TEXT,
    "timings" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMPTZ(3),
    "finished_at" TIMESTAMPTZ(3),
    CONSTRAINT "processing_run_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "processing_run_fact_id_created_at_idx" ON "processing_run"("fact_id", "created_at");
ALTER TABLE "processing_run" ADD CONSTRAINT "processing_run_fact_id_fkey" FOREIGN KEY ("fact_id") REFERENCES "fact"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Period numbering shared with src/activation/periods.ts: days since 1970-01-01, ISO weeks since the
-- week of 1969-12-29, months since 1970-01.
CREATE FUNCTION aa_period(grain SMALLINT, d DATE) RETURNS INTEGER
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE grain
    WHEN 0 THEN d - DATE '1970-01-01'
    WHEN 1 THEN ((d - DATE '1970-01-01' + 3) - (((d - DATE '1970-01-01' + 3) % 7) + 7) % 7) / 7
    ELSE (EXTRACT(YEAR FROM d)::INTEGER - 1970) * 12 + EXTRACT(MONTH FROM d)::INTEGER - 1
  END
$$;

CREATE FUNCTION aa_period_start(grain SMALLINT, p INTEGER) RETURNS DATE
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE grain
    WHEN 0 THEN DATE '1970-01-01' + p
    WHEN 1 THEN DATE '1970-01-01' + (p * 7 - 3)
    ELSE (DATE '1970-01-01' + make_interval(months => p))::DATE
  END
$$;
