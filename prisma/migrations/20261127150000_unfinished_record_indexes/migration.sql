-- Workers look for records whose job may need reviving every JOB_RECOVERY_INTERVAL_MS
-- (src/jobs/recovery.ts). The records it asks for are few, the tables grow forever: partial indexes on
-- just those records keep each sweep from reading the whole of processing_run, materialization and
-- webhook_delivery. (Partial indexes have no schema.prisma notation; the migration alone holds them.)
CREATE INDEX "processing_run_unfinished_idx" ON "processing_run"("created_at") WHERE "status" IN ('queued', 'running');
CREATE INDEX "materialization_unfinished_idx" ON "materialization"("created_at") WHERE "status" IN ('queued', 'running');
CREATE INDEX "webhook_delivery_pending_idx" ON "webhook_delivery"("created_at") WHERE "status" = 'pending';
