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
  from: string;
  through: string;
  timings: Record<string, number>;
}

export type StatusState = "new" | "retained" | "reactivated" | "inactive";

export interface StatusRow {
  user_id: string;
  period: string;
  state: StatusState;
  previous_state: StatusState | null;
  transition_segment: string;
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
  growth_state?: string;
}

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

export interface LayerEngine {
  ingestEvents(fact: FactRef, events: readonly ValidEvent[]): Promise<IngestResult>;
  process(fact: FactRef, through: string, progress?: ProcessProgress): Promise<ProcessResult>;
  deleteFactData(factId: number): Promise<void>;
}
export type { Grain };
