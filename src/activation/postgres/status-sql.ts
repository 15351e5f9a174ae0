/**
 * The Activation Status columns of period P derived from the island that governs P for a user
 * (start_p <= P < next_start). Mirrors src/activation/status-rules.ts, which the tests hold it to.
 * `i` is the island alias and `P` an SQL expression for the period.
 */
export function statusColumnExprs(i: string, P: string, grainCode: number): Record<string, string> {
  const s = `${i}.start_p`, e = `${i}.end_p`, pe = `${i}.prev_end`, f = `${i}.first_p`;
  const lastP = `LEAST(${P}, ${e})`;
  const stateAt = (x: string) => `CASE WHEN ${x} = ${s} THEN CASE WHEN ${pe} IS NULL THEN 'new' ELSE 'reactivated' END ELSE 'retained' END`;
  const state = `CASE WHEN ${P} <= ${e} THEN ${stateAt(P)} ELSE 'inactive' END`;
  const prev = `CASE WHEN ${P} = ${f} THEN NULL
      WHEN ${P} <= ${e} THEN CASE WHEN ${P} = ${s} THEN 'inactive' ELSE ${stateAt(`${P} - 1`)} END
      WHEN ${P} = ${e} + 1 THEN ${stateAt(e)}
      ELSE 'inactive' END`;
  const cols: Record<string, string> = {
    state,
    previous_state: prev,
    // previous_state || '_to_' || state, case by case: the same words without building a string per row.
    transition_segment: `CASE WHEN ${P} = ${f} THEN 'new'
      WHEN ${P} <= ${e} THEN CASE WHEN ${P} = ${s} THEN 'inactive_to_reactivated' WHEN ${P} - 1 > ${s} THEN 'retained_to_retained'
        WHEN ${pe} IS NULL THEN 'new_to_retained' ELSE 'reactivated_to_retained' END
      WHEN ${P} = ${e} + 1 THEN CASE WHEN ${e} > ${s} THEN 'retained_to_inactive' WHEN ${pe} IS NULL THEN 'new_to_inactive' ELSE 'reactivated_to_inactive' END
      ELSE 'inactive_to_inactive' END`,
    is_active: `${P} <= ${e}`,
    first_active_period: f,
    last_active_period: lastP,
    inactivity_periods: `GREATEST(${P} - ${e}, 0)`,
    consecutive_active_periods: `CASE WHEN ${P} <= ${e} THEN ${P} - ${s} + 1 ELSE 0 END`,
    last_streak_periods: `${lastP} - ${s} + 1`,
    return_interval_periods: `CASE WHEN ${P} > ${e} THEN NULL WHEN ${P} > ${s} THEN 1 ELSE ${s} - ${pe} END`,
    last_active_state: stateAt(lastP),
    active_periods_total: `${i}.active_before + ${lastP} - ${s} + 1`,
    tenure_periods: `${P} - ${f}`,
  };
  if (grainCode === 0)
    cols.growth_state = `CASE
          WHEN ${P} <= ${e} THEN CASE
            WHEN ${P} = ${s} AND ${pe} IS NULL THEN 'new'
            WHEN ${P} > ${s} OR ${s} - ${pe} <= 6 THEN 'current'
            WHEN ${s} - ${pe} <= 29 THEN 'reactivated'
            ELSE 'resurrected' END
          WHEN ${P} - ${e} <= 6 THEN 'at_risk_wau'
          WHEN ${P} - ${e} <= 29 THEN 'at_risk_mau'
          ELSE 'dormant' END`;
  return cols;
}

export function statusColumnsSql(i: string, P: string, grainCode: number): string {
  return Object.entries(statusColumnExprs(i, P, grainCode))
    .map(([name, expr]) => `${expr} AS ${name}`)
    .join(",\n    ");
}
