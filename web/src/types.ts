import type { FilterNode, Grain } from "./fields";

export interface Fact {
  name: string;
  timezone: string;
  service: string | null;
  description?: string | null;
  processed_through?: string | null;
}
export interface Definition {
  name: string;
  fact: string;
  grain: Grain;
  filter: FilterNode;
  description?: string | null;
}
export interface Audience extends Definition {
  id: string;
  version: number;
  created_at: string;
  updated_at: string;
}
export interface Preview {
  count: number;
  by_state: Record<string, number>;
  by_growth_state: Record<string, number>;
  sample: Array<Record<string, unknown>>;
  as_of: string;
  grain: Grain;
  took_ms: number;
}
export interface Materialization {
  id: string;
  audience_id: string;
  version: number;
  as_of: string;
  status: "queued" | "running" | "succeeded" | "failed";
  trigger: "api" | "schedule" | "on_new_data" | "demo" | "bench";
  progress: number;
  member_count: number | null;
  error: string | null;
  created_at: string;
  finished_at: string | null;
}
export interface Campaign {
  id: string;
  name: string;
  materialization_id: string;
  audience_id: string;
  as_of: string;
  grain: Grain;
  goal: { fact: string; window_periods: number; metric: "returned" | "active_periods" };
  holdout_percent: number;
  launch_date: string;
  window: { start: string; end: string };
  /** assigning: a job is splitting the list into arms; failed: the first assignment failed (no assignments). */
  status: "assigning" | "ready" | "failed";
  assignment_error: string | null;
  pending_changes: { materialization_id: string; holdout_percent: number; salt: string; launch_date: string } | null;
  assigned_at: string | null;
  counts: { treatment: number; control: number; global_control: number; total: number };
  launched: boolean;
  created_at: string;
}
type Ci = [number, number] | null;
export interface MetricResult {
  groups: { treatment: { n: number; mean: number | null }; control: { n: number; mean: number | null } };
  absolute_lift: number | null;
  absolute_ci95: Ci;
  relative_lift: number | null;
  relative_ci95: Ci;
  p_value: number | null;
  cuped: { absolute_lift: number | null; absolute_ci95: Ci; p_value: number | null; theta: number | null };
  reasons: Record<string, string>;
}
export interface CampaignResults {
  campaign_id: string;
  computed_at: string;
  stale: boolean;
  recomputation_error: { message: string; failed_at: string } | null;
  analysis: string;
  goal: MetricResult & { fact: string; metric: string; window_periods: number };
  window: { start: string; end: string; processed_through: string | null; days_total: number; days_observed: number; complete: boolean };
  assignment: { holdout_percent: number; treatment: number; control: number; global_control: number };
  srm: { expected_control_share: number; n_treatment: number; n_control: number; chi_square: number | null; p_value: number | null; flagged: boolean; reason: string | null };
  breakdowns: { inactivity_periods: Array<MetricResult & { bucket: string }>; state: Array<MetricResult & { bucket: string }> };
  funnel: { treatment: { assigned: number; reached: number; by_status: Record<string, number> }; control: { assigned: number; held_out: number } };
}
export type MetricsRow = Record<string, string | number | boolean>;
