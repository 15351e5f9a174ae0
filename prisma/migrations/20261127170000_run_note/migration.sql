-- What a run's record says besides its numbers: a run overtaken by a later one says that it processed
-- through the later date, and whether anything was left to recompute.
ALTER TABLE "processing_run" ADD COLUMN "note" TEXT;
