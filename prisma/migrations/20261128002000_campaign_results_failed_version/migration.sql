-- A campaign's results are recomputed by a job whenever its data_version moves on (the generation asked
-- for; campaign_result.data_version is the one computed). The workers' recovery sweep queues the job of
-- every campaign whose results are behind (a request Redis lost, or never took: src/jobs/recovery.ts).
--   results_failed_version  the data_version whose recomputation failed on its last attempt: the sweep
--                           leaves it (retrying a computation that fails every time would spin), and
--                           newer data asks again.
ALTER TABLE "campaign" ADD COLUMN "results_failed_version" INTEGER;
