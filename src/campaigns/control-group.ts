import { z } from "zod";
import { isoInstant } from "../http/formats.js";
import type { AppContext } from "../context.js";
import { isWholeBuckets } from "./assignment.js";

/**
 * The optional global control group: users whose bucket under the group's own salt falls below
 * percent × 100 are held out of every campaign created while it is set, and reported separately
 * (arm "global_control"). A campaign copies the settings when it assigns, so changing them never
 * reassigns a campaign that exists. Percent 0 turns it off.
 */
export const controlGroupBodySchema = z
  .object({
    percent: z.number().min(0).max(50).refine(isWholeBuckets, "at most two decimals (a whole number of the 10,000 buckets)").describe("0 turns the global control group off"),
    salt: z.string().min(1).max(200).describe("Salt of the group's own assignment hash"),
    // What GET answers may be sent back as it is: enabled must then agree with percent; updated_at is the server's.
    enabled: z.boolean().optional().describe("Read back from GET: must agree with percent (enabled ⇔ percent > 0)"),
    updated_at: z.string().nullable().optional().describe("Read back from GET: ignored (the server sets it)"),
  })
  .strict()
  .refine((b) => b.enabled === undefined || b.enabled === b.percent > 0, {
    path: ["enabled"],
    message: "must agree with percent: true when percent > 0, false when it is 0",
  });

export const controlGroupSchema = z
  .object({
    enabled: z.boolean(),
    percent: z.number(),
    salt: z.string().nullable(),
    updated_at: isoInstant.nullable(),
  })
  .meta({ id: "ControlGroup" });
export type ControlGroupView = z.infer<typeof controlGroupSchema>;

const ROW_ID = 1;

/** The settings new campaigns use, or null when there is no global control group. */
export async function getControlGroupSettings(ctx: AppContext): Promise<{ percent: number; salt: string } | null> {
  const row = await ctx.db.prisma.controlGroup.findUnique({ where: { id: ROW_ID } });
  return row && row.percent > 0 ? { percent: row.percent, salt: row.salt } : null;
}

export async function getControlGroup(ctx: AppContext): Promise<ControlGroupView> {
  const row = await ctx.db.prisma.controlGroup.findUnique({ where: { id: ROW_ID } });
  if (!row) return { enabled: false, percent: 0, salt: null, updated_at: null };
  return { enabled: row.percent > 0, percent: row.percent, salt: row.salt, updated_at: row.updatedAt.toISOString() };
}

export async function putControlGroup(ctx: AppContext, body: z.infer<typeof controlGroupBodySchema>): Promise<ControlGroupView> {
  const now = new Date();
  await ctx.db.prisma.controlGroup.upsert({
    where: { id: ROW_ID },
    create: { id: ROW_ID, percent: body.percent, salt: body.salt, updatedAt: now },
    update: { percent: body.percent, salt: body.salt, updatedAt: now },
  });
  return getControlGroup(ctx);
}
