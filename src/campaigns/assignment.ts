import { createHash } from "node:crypto";

/**
 * The campaign assignment rule of the spec, as a pure function (the SQL function aa_assignment_bucket
 * of the campaigns migration computes the same set-based; test/campaign-assignment.test.ts holds them
 * equal):
 *
 *   bucket = (first 4 bytes of sha256(utf8(salt + ":" + user_id)) as a big-endian uint32) mod 10000
 *   control when bucket < holdout_percent × 100, else treatment.
 *
 * Nothing else goes in: the same salt and user give the same bucket in any process, on any machine.
 */
export const BUCKETS = 10_000;

export type Arm = "treatment" | "control" | "global_control";
export const ARMS: readonly Arm[] = ["treatment", "control", "global_control"];

export function assignmentBucket(salt: string, userId: string): number {
  const digest = createHash("sha256").update(`${salt}:${userId}`, "utf8").digest();
  return digest.readUInt32BE(0) % BUCKETS;
}

/** Buckets below this are held out: holdout_percent × 100 (percents have at most two decimals). */
export function holdoutThreshold(percent: number): number {
  return Math.round(percent * 100);
}

/** True when a percent has at most two decimals, i.e. names a whole number of buckets. */
export function isWholeBuckets(percent: number): boolean {
  return Math.abs(percent * 100 - Math.round(percent * 100)) < 1e-7;
}

export function armOfBucket(bucket: number, holdoutPercent: number): "treatment" | "control" {
  return bucket < holdoutThreshold(holdoutPercent) ? "control" : "treatment";
}

export interface GlobalControl {
  percent: number;
  salt: string;
}

/**
 * The arm of one user: members of the global control group (by the same hash with the group's own
 * salt) are held out of every campaign; the others split by the campaign's salt and holdout.
 */
export function assign(userId: string, campaign: { salt: string; holdoutPercent: number }, global?: GlobalControl | null): { arm: Arm; bucket: number } {
  const bucket = assignmentBucket(campaign.salt, userId);
  if (global && global.percent > 0 && assignmentBucket(global.salt, userId) < holdoutThreshold(global.percent)) return { arm: "global_control", bucket };
  return { arm: armOfBucket(bucket, campaign.holdoutPercent), bucket };
}
