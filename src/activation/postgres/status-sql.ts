/**
 * The Activation Status columns of period P derived from the island that governs P for a user
 * (start_p <= P < next_start). Mirrors src/activation/status-rules.ts, which the tests hold it to.
 * `i` is the island alias and `P` an SQL expression for the period.
 */
export function statusColumnsSql(i: string, P: string, grainCode: number): string {
  const s = `${i}.start_p`, e = `${i}.end_p`, pe = `${i}.prev_end`, f = `${i}.first_p`;
  const lastP = `LEAST(${P}, ${e})`;
  const stateAt = (x: string) => `CASE WHEN ${x} = ${s} THEN CASE WHEN ${pe} IS NULL THEN 'new' ELSE 'reactivated' END ELSE 'retained' END`;
  const state = `CASE WHEN ${P} <= ${e} THEN ${stateAt(P)} ELSE 'inactive' END`;
  const prev = `CASE WHEN ${P} = ${f} THEN NULL
      WHEN ${P} <= ${e} THEN CASE WHEN ${P} = ${s} THEN 'inactive' ELSE ${stateAt(`${P} - 1`)} END
      WHEN ${P} = ${e} + 1 THEN ${stateAt(e)}
      ELSE 'inactive' END`;
  const interval = `CASE WHEN ${P} > ${e} THEN NULL WHEN ${P} > ${s} THEN 1 ELSE ${s} - ${pe} END`;
  const growth =
    grainCode === 0
      ? `, CASE
          WHEN ${P} <= ${e} THEN CASE
            WHEN ${P} = ${s} AND ${pe} IS NULL THEN 'new'
            WHEN ${P} > ${s} OR ${s} - ${pe} <= 6 THEN 'current'
            WHEN ${s} - ${pe} <= 29 THEN 'reactivated'
            ELSE 'resurrected' END
          WHEN ${P} - ${e} <= 6 THEN 'at_risk_wau'
          WHEN ${P} - ${e} <= 29 THEN 'at_risk_mau'
          ELSE 'dormant' END AS growth_state`
      : "";
  return `${state} AS state,
    ${prev} AS previous_state,
    CASE WHEN ${P} = ${f} THEN 'new' ELSE (${prev}) || '_to_' || (${state}) END AS transition_segment,
    ${P} <= ${e} AS is_active,
    ${f} AS first_active_period,
    ${lastP} AS last_active_period,
    GREATEST(${P} - ${e}, 0) AS inactivity_periods,
    CASE WHEN ${P} <= ${e} THEN ${P} - ${s} + 1 ELSE 0 END AS consecutive_active_periods,
    ${lastP} - ${s} + 1 AS last_streak_periods,
    ${interval} AS return_interval_periods,
    ${stateAt(lastP)} AS last_active_state,
    ${i}.active_before + ${lastP} - ${s} + 1 AS active_periods_total,
    ${P} - ${f} AS tenure_periods${growth}`;
}
