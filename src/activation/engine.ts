import type { Grain } from "./periods.js";
import type { ValidEvent } from "../facts/event-validation.js";

/**
 * The one boundary around the layer's bulk data (DESIGN principle 6): ingestion, processing and every
 * read of activity, islands and metrics go through this interface. PostgreSQL implements it now
 * (./postgres); nothing outside an implementation writes layer SQL.
 */
export interface FactRef {
  id: number;
  name: string;
  timezone: string;
}

export interface IngestResult {
  accepted: number;
  earliest_date: string | null;
  latest_date: string | null;
}

export interface ProcessProgress {
  (fraction: number, step: string): void | Promise<void>;
}

export interface ProcessResult {
  /** The first date recomputed; null when there was nothing to recompute. */
  from: string | null;
  /** The watermark the run leaves: the date asked for, or a later one when another run got there first. */
  through: string;
  timings: Record<string, number>;
}

export type StatusState = "new" | "retained" | "reactivated" | "inactive";
export type TransitionSegment =
  | "new" | "new_to_retained" | "new_to_inactive" | "retained_to_retained" | "retained_to_inactive"
  | "reactivated_to_retained" | "reactivated_to_inactive" | "inactive_to_reactivated" | "inactive_to_inactive";
export type GrowthState = "new" | "current" | "reactivated" | "resurrected" | "at_risk_wau" | "at_risk_mau" | "dormant";

export interface StatusRow {
  user_id: string;
  period: string;
  state: StatusState;
  previous_state: StatusState | null;
  transition_segment: TransitionSegment;
  is_active: boolean;
  first_active_period: string;
  last_active_period: string;
  inactivity_periods: number;
  consecutive_active_periods: number;
  last_streak_periods: number;
  return_interval_periods: number | null;
  last_active_state: Exclude<StatusState, "inactive">;
  active_periods_total: number;
  tenure_periods: number;
  growth_state?: GrowthState;
}

/** A frozen audience member: the status columns at the materialisation's as_of. */
export type MemberRow = Omit<StatusRow, "period" | "growth_state"> & { growth_state: GrowthState | null };

export interface ActivationRow {
  user_id: string;
  period: string;
  state: Exclude<StatusState, "inactive">;
  return_interval_periods: number | null;
}

export interface FirstLastRow {
  user_id: string;
  snapshot_date: string;
  first_active_date: string;
  last_active_date: string;
  first_event_at: string;
  last_event_at: string;
}

export type MetricsRow = Record<string, number | string | boolean | null> & { period: string };

export interface KeysetPage {
  /** Serve rows with user_key greater than this. */
  afterUserKey?: number;
  limit: number;
}

/** A statement runner inside the engine's transaction, for callers that record alongside it. */
export interface TxQuery {
  query(text: string, params?: unknown[]): Promise<unknown>;
}

export interface ProcessOptions {
  progress?: ProcessProgress;
  /** Start date recorded by an earlier attempt of the same run that died: it is never skipped. */
  resumeFrom?: string | null;
  /** Called inside the transaction that claims the start date, so a retry can resume from it. */
  onClaimed?: (from: string | null, tx: TxQuery) => Promise<void>;
}

export interface LayerEngine {
  ingestEvents(fact: FactRef, events: readonly ValidEvent[]): Promise<IngestResult>;
  process(fact: FactRef, through: string, options?: ProcessOptions): Promise<ProcessResult>;
  deleteFactData(factId: number): Promise<void>;
}
export type { Grain };
