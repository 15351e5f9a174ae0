import type pg from "pg";
import type { ActivationRow, FactRef, FirstLastRow, IngestResult, LayerEngine, ProcessOptions, ProcessResult, StatusRow } from "../engine.js";
import type { ValidEvent } from "../../facts/event-validation.js";
import { ingestEventBatch } from "./ingest.js";
import { bulkLoadEvents, type BulkLoadOptions, type BulkLoadSummary, type EventColumns } from "./bulk-load.js";
import { processFact } from "./process.js";
import { deleteCounts } from "./island-counts.js";
import { withReadSnapshot, withTransaction } from "./tx.js";
import {
  ACTIVATION_COLUMNS, EXPORT_PLANNER_SETTINGS, FIRST_LAST_COLUMNS, STATUS_DATE_COLUMNS, activationQuery, firstLastQuery, metricsRange, statusColumnsFor, statusQuery,
  userTimelineQuery, type IslandPage, type StatusFilter,
} from "./queries.js";
import { copyQueryOut, type ExportFormat } from "./copy-out.js";
import { CHUNK_BITS, CHUNK_SLOTS } from "./pack-sql.js";
import type { Readable } from "node:stream";
import * as audiences from "./audiences.js";
import type { AudienceQuery } from "./audience-sql.js";
import * as campaigns from "./campaigns.js";
import * as campaignOutcomes from "./campaign-outcomes.js";

export interface PageRequest {
  afterUserKey?: number;
  limit: number;
}
type Keyed<T> = T & { user_key: number };

export class PostgresLayerEngine implements LayerEngine {
  constructor(readonly pool: pg.Pool) {}

  ingestEvents(
    fact: FactRef,
    events: readonly ValidEvent[],
    beforeCommit?: (client: pg.PoolClient, result: IngestResult) => Promise<void>,
  ): Promise<IngestResult> {
    return withTransaction(this.pool, async (client) => {
      const result = await ingestEventBatch(client, fact, events);
      await beforeCommit?.(client, result);
      return result;
    });
  }

  /**
   * Bulk ingestion: validated events streamed through COPY into staging tables and folded like HTTP
   * batches, segment by segment, in one transaction (see bulkLoadEvents). An error thrown by
   * `batches` rolls everything back.
   */
  bulkLoad(fact: FactRef, batches: AsyncIterable<EventColumns>, options?: BulkLoadOptions): Promise<BulkLoadSummary> {
    return bulkLoadEvents(this.pool, fact, batches, options);
  }

  process(fact: FactRef, through: string, options?: ProcessOptions): Promise<ProcessResult> {
    return processFact(this.pool, fact, through, options);
  }

  /** Deletes a fact's activity and layer, in `client`'s transaction when given (else in one of its own). */
  async deleteFactData(factId: number, client?: pg.ClientBase): Promise<void> {
    const work = async (c: pg.ClientBase) => {
      await c.query(`DELETE FROM layer_metric WHERE fact_id = $1`, [factId]);
      for (const packs of ["layer_latest_pack", "layer_latest_first", "layer_closed_pack"])
        await c.query(`DELETE FROM ${packs} WHERE fact_id = $1`, [factId]);
      await deleteCounts(c, factId);
      await c.query(`DELETE FROM activity_day WHERE fact_id = $1`, [factId]);
    };
    if (client) await work(client);
    else await withTransaction(this.pool, work);
  }

  async statusPage(factId: number, g: number, period: number, filter: StatusFilter, page: PageRequest, latest = false): Promise<Keyed<StatusRow>[]> {
    return this.pageByChunks(factId, g, page, async (c, p) => {
      const q = statusQuery(g, filter, p, latest);
      return (await c.query(q.sql, [factId, period, ...q.extraParams])).rows;
    });
  }

  /**
   * A page of a list over a grain's islands, read a range of chunks at a time (IslandPage): a range wide
   * enough for a full page of densely packed users first, twice as wide each time it falls short, until
   * the page is full or the last chunk is read. All in one snapshot, as a single query would be.
   */
  private async pageByChunks<T>(
    factId: number, g: number, page: PageRequest, read: (c: pg.ClientBase, p: IslandPage) => Promise<Keyed<T>[]>,
  ): Promise<Keyed<T>[]> {
    return withReadSnapshot(this.pool, async (c) => {
      const last = (await c.query<{ c: number | null }>(`SELECT max(chunk) AS c FROM layer_latest_pack WHERE fact_id = $1 AND grain = $2`, [factId, g])).rows[0]!.c;
      const rows: Keyed<T>[] = [];
      if (last === null) return rows;
      let after = page.afterUserKey;
      let lo = after === undefined ? 0 : Math.max(0, after + 1) >> CHUNK_BITS;
      let width = Math.ceil(page.limit / CHUNK_SLOTS) + 1;
      while (rows.length < page.limit && lo <= last) {
        const hi = Math.min(lo + width - 1, last);
        const got = await read(c, { afterUserKey: after, limit: page.limit - rows.length, chunkLo: lo, chunkHi: hi });
        rows.push(...got);
        if (got.length) after = got[got.length - 1]!.user_key;
        lo = hi + 1;
        width *= 2;
      }
      return rows;
    });
  }

  statusExport(factId: number, g: number, period: number, filter: StatusFilter, format: ExportFormat, latest = false): Promise<Readable> {
    const q = statusQuery(g, filter, undefined, latest, format === "ndjson");
    return copyQueryOut(this.pool, q.sql, [factId, period, ...q.extraParams], statusColumnsFor(g), format, EXPORT_PLANNER_SETTINGS, format === "ndjson" ? STATUS_DATE_COLUMNS : undefined);
  }

  async activationPage(factId: number, g: number, period: number, state: string | undefined, page: PageRequest): Promise<Keyed<ActivationRow>[]> {
    return this.pageByChunks(factId, g, page, async (c, p) => {
      const q = activationQuery(g, state, p);
      return (await c.query(q.sql, [factId, period, ...q.extraParams])).rows;
    });
  }

  activationExport(factId: number, g: number, period: number, state: string | undefined, format: ExportFormat): Promise<Readable> {
    const q = activationQuery(g, state);
    return copyQueryOut(this.pool, q.sql, [factId, period, ...q.extraParams], ACTIVATION_COLUMNS, format, EXPORT_PLANNER_SETTINGS);
  }

  async firstLastPage(factId: number, day: number, userKey: number | undefined, page: PageRequest, latest = false): Promise<Keyed<FirstLastRow>[]> {
    if (userKey !== undefined) {
      // One user: its chunk's packs alone, whatever the page.
      const q = firstLastQuery({ userKey, latest });
      const rows: Keyed<FirstLastRow>[] = (await this.pool.query(q.sql, [factId, day, ...q.extraParams])).rows;
      return rows.filter((r) => page.afterUserKey === undefined || r.user_key > page.afterUserKey).slice(0, page.limit);
    }
    return this.pageByChunks(factId, 0, page, async (c, p) => {
      const q = firstLastQuery({ page: p, latest });
      return (await c.query(q.sql, [factId, day, ...q.extraParams])).rows;
    });
  }

  firstLastExport(factId: number, day: number, userKey: number | undefined, format: ExportFormat, latest = false): Promise<Readable> {
    const q = firstLastQuery({ userKey, latest });
    return copyQueryOut(this.pool, q.sql, [factId, day, ...q.extraParams], FIRST_LAST_COLUMNS, format, userKey === undefined ? EXPORT_PLANNER_SETTINGS : undefined);
  }

  async userTimeline(factId: number, g: number, userKey: number, from: number, to: number): Promise<Keyed<StatusRow>[]> {
    return (await this.pool.query(userTimelineQuery(g), [factId, userKey, from, to])).rows;
  }

  /** The internal key of a user id, or null when the id was never seen. */
  async userKeyOf(userId: string): Promise<number | null> {
    const r = await this.pool.query<{ user_key: number }>(`SELECT user_key FROM app_user WHERE external_id = $1`, [userId]);
    return r.rows[0]?.user_key ?? null;
  }

  metrics(factId: number, g: number, from: number, to: number) {
    return metricsRange(this.pool, factId, g, from, to);
  }

  /** Metrics of several facts over one range, keyed by fact id (core-action tracking). */
  async metricsOfFacts(factIds: number[], g: number, from: number, to: number) {
    const out = new Map<number, Array<Record<string, number | string>>>();
    for (const id of factIds) out.set(id, await metricsRange(this.pool, id, g, from, to));
    return out;
  }

  // ---- audiences
  previewAudience(q: AudienceQuery, sampleSize = 20) {
    return audiences.previewAudience(this.pool, q, sampleSize);
  }

  materializeMembers(materializationId: string, q: AudienceQuery) {
    return audiences.materializeMembers(this.pool, materializationId, q);
  }

  memberPage(materializationId: string, page: PageRequest) {
    return audiences.memberPage(this.pool, materializationId, page.afterUserKey, page.limit);
  }

  memberExport(materializationId: string, format: ExportFormat) {
    return audiences.memberExport(this.pool, materializationId, format);
  }

  changeCounts(current: string, since: string) {
    return audiences.changeCounts(this.pool, current, since);
  }

  changePage(current: string, since: string, kind: "entered" | "exited", page: PageRequest) {
    return audiences.changePage(this.pool, current, since, kind, page.afterUserKey, page.limit);
  }

  changeExport(current: string, since: string, kind: "entered" | "exited", format: ExportFormat) {
    return audiences.changeExport(this.pool, current, since, kind, format);
  }

  deleteMembers(materializationId: string) {
    return audiences.deleteMembers(this.pool, materializationId);
  }

  // ---- campaigns (src/activation/postgres/campaigns.ts)
  assignCampaign(p: campaigns.AssignmentParams, hooks?: campaigns.AssignHooks) {
    return campaigns.assignCampaign(this.pool, p, hooks);
  }

  deleteCampaignData(campaignId: string, after?: (tx: pg.PoolClient) => Promise<void>) {
    return campaigns.deleteCampaignData(this.pool, campaignId, after);
  }

  assignmentPage(campaignId: string, arm: campaigns.CampaignArm | undefined, page: PageRequest) {
    return campaigns.assignmentPage(this.pool, campaignId, arm, page.afterUserKey, page.limit);
  }

  assignmentExport(campaignId: string, arm: campaigns.CampaignArm | undefined, format: ExportFormat) {
    return campaigns.assignmentExport(this.pool, campaignId, arm, format);
  }

  recordSends(campaignId: string, sends: campaigns.SendInput[], hooks?: Parameters<typeof campaigns.recordSends>[3]) {
    return campaigns.recordSends(this.pool, campaignId, sends, hooks);
  }

  recordOutcomes(campaignId: string, outcomes: campaigns.OutcomeInput[], hooks?: Parameters<typeof campaigns.recordOutcomes>[3]) {
    return campaigns.recordOutcomes(this.pool, campaignId, outcomes, hooks);
  }

  campaignOutcome(campaignId: string, outcomeId: string) {
    return campaignOutcomes.getOutcome(this.pool, campaignId, outcomeId);
  }

  campaignOutcomePage(campaignId: string, q: campaignOutcomes.OutcomePageQuery) {
    return campaignOutcomes.outcomePage(this.pool, campaignId, q);
  }

  campaignOutcomeRevisions(campaignId: string, outcomeId: string, revision: number, limit: number) {
    return campaignOutcomes.outcomeRevisions(this.pool, campaignId, outcomeId, revision, limit);
  }

  /** Corrects or retracts one outcome (src/activation/postgres/campaign-outcomes.ts). */
  changeCampaignOutcome(
    campaignId: string, outcomeId: string, change: campaignOutcomes.OutcomeChange,
    hooks: Parameters<typeof campaignOutcomes.changeOutcome>[4],
  ) {
    return campaignOutcomes.changeOutcome(this.pool, campaignId, outcomeId, change, hooks);
  }

  /** Folds the goal fact's processed activity into the members' window and covariate days (from a day number, or all). */
  refreshCampaignActivity(campaignId: string, ranges: campaigns.ActivityRanges, hooks: campaigns.RefreshHooks) {
    return campaigns.refreshActivity(this.pool, campaignId, ranges, hooks);
  }

  campaignGoalAggregates(campaignId: string, metric: "returned" | "active_periods") {
    return campaigns.goalAggregates(this.pool, campaignId, metric);
  }

  campaignOutcomeAggregates(q: Parameters<typeof campaigns.outcomeAggregates>[1]) {
    return campaigns.outcomeAggregates(this.pool, q);
  }

  campaignSendFunnel(campaignId: string) {
    return campaigns.sendFunnel(this.pool, campaignId);
  }
}
