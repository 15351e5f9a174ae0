import type pg from "pg";
import type { PrismaTransaction } from "../db/client.js";
import { conflict, notFound } from "../http/problem.js";

/**
 * A fact's lifecycle lock: a transaction-level advisory lock, second key the fact id. The fact's
 * deletion takes it exclusively. Whatever would leave something of the fact behind takes it shared,
 * first in its transaction, and checks under it that the fact still exists: ingestion (activity rows),
 * a run request (a run), an audience or a campaign that references the fact. Each of them therefore
 * either commits before the deletion starts, which then deletes what it stored or refuses with 409
 * naming the reference, or waits for the deletion and finds no fact. Shared holders do not wait for
 * each other: concurrent batches of one fact still run side by side.
 *
 * An advisory lock, not the fact's row: ingestion locks activity rows and then the fact's row, and a
 * deletion deletes activity rows, so taking the row first would order the two the other way round (a
 * deadlock). Processing has its own lock.
 */
export const FACT_LIFECYCLE_LOCK_NS = 4_272;

/** The answer to a fact that does not exist, or no longer does. */
export const noFactNamed = (name: string) => notFound(`No fact named '${name}'.`);

type Transaction = pg.ClientBase | PrismaTransaction;

// In id order, so that transactions holding several facts never wait for each other in a cycle.
const HOLD = `SELECT pg_advisory_xact_lock_shared($1::int, id) FROM unnest($2::int[]) AS id`;
const EXISTING = `SELECT id FROM fact WHERE id = ANY($1::int[])`;

/**
 * How long a deletion waits for the fact's writers. Batches, run requests and audience or campaign
 * changes hold it for well under a second; a bulk load holds it for minutes, and a deletion waiting that
 * long would hang its HTTP request and, meanwhile, keep every new writer of the fact waiting behind it.
 */
export const DELETION_WAIT_MS = 5_000;

/**
 * The deletion's side: returns once no transaction holds the fact, and keeps new ones waiting until this
 * one ends; a 409 with Retry-After when writers still hold it after DELETION_WAIT_MS.
 */
export async function lockFactForDeletion(client: pg.ClientBase, fact: { id: number; name: string }): Promise<void> {
  await client.query(`SET LOCAL lock_timeout = ${DELETION_WAIT_MS | 0}`);
  try {
    await client.query(`SELECT pg_advisory_xact_lock($1::int, $2::int)`, [FACT_LIFECYCLE_LOCK_NS, fact.id]);
  } catch (err) {
    if ((err as { code?: string }).code === LOCK_NOT_AVAILABLE)
      throw conflict(
        `'${fact.name}' is being written to (an event batch, a bulk load, a run request or a change of an audience or campaign that uses it) ` +
          `and was still after ${DELETION_WAIT_MS / 1000} s: nothing was deleted; try again once it is done.`,
        { headers: { "retry-after": String(Math.ceil(DELETION_WAIT_MS / 1000)) } },
      );
    throw err;
  }
  // The wait was for the writers only: what the deletion does next waits as any statement does.
  await client.query(`SET LOCAL lock_timeout = DEFAULT`);
}

const LOCK_NOT_AVAILABLE = "55P03";

/**
 * Keeps the facts from being deleted until the caller's transaction ends, and answers which of them
 * exist. Two statements whatever the number of facts: a statement reads as of its start, so the
 * check must be a statement after the wait to see a deletion that committed during it.
 */
export async function holdFacts(tx: Transaction, factIds: readonly number[]): Promise<Set<number>> {
  const ids = [...new Set(factIds)].sort((a, b) => a - b);
  if (ids.length === 0) return new Set();
  let rows: Array<{ id: number }>;
  if ("$queryRawUnsafe" in tx) {
    await tx.$executeRawUnsafe(HOLD, FACT_LIFECYCLE_LOCK_NS, ids);
    rows = await tx.$queryRawUnsafe<Array<{ id: number }>>(EXISTING, ids);
  } else {
    await tx.query(HOLD, [FACT_LIFECYCLE_LOCK_NS, ids]);
    rows = (await tx.query<{ id: number }>(EXISTING, [ids])).rows;
  }
  return new Set(rows.map((r) => r.id));
}

/** holdFacts for one fact, answering 404 (as for any missing fact) when it is gone. */
export async function holdFact(tx: Transaction, fact: { id: number; name: string }): Promise<void> {
  if (!(await holdFacts(tx, [fact.id])).has(fact.id)) throw noFactNamed(fact.name);
}
