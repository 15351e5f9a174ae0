import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFact } from "./helpers/api.js";
import { createTestEnv, type TestEnv } from "./helpers/context.js";
import { freePort, killHard } from "./helpers/private-services.js";

/**
 * A real server process (`src/server.ts`) stopped while a large ingestion request is in flight: the
 * batch is stored whole or not at all, whatever the moment. SIGTERM drains the request and answers it;
 * SIGKILL loses the connection and the transaction with it.
 */
let env: TestEnv;
const N = 10_000; // the largest batch a request may hold
const FACT = "t_ingest";

beforeAll(async () => {
  env = await createTestEnv();
  await createFact(env, FACT);
});
afterAll(async () => env?.close());

interface Server {
  child: ChildProcess;
  port: number;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

async function startServer(): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", "src/server.ts"], {
    env: { ...process.env, ...env.childEnv, PORT: String(port), HOST: "127.0.0.1", WORKERS: "0", LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once("exit", (code, signal) => r({ code, signal })));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited: ${out}`);
    const up = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
    if (up) return { child, port, exit, output: () => out };
    if (Date.now() > deadline) throw new Error(`server never answered: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A batch of N events, each a new user, so every stored event is one row of its own. */
function batchBody(prefix: string): Buffer {
  const events = Array.from({ length: N }, (_, i) => ({ user_id: `${prefix}-${i}`, occurred_at: `2026-03-0${1 + (i % 9)}T10:00:00Z` }));
  return Buffer.from(JSON.stringify({ events }));
}

/**
 * POSTs `body` in two halves; `between` runs after the first half is on the wire. Resolves with the
 * status, or with the network error when the connection is lost before an answer.
 */
function postInHalves(port: number, body: Buffer, between: () => Promise<void>): { result: Promise<{ status?: number; body?: string; error?: string }>; sent: Promise<void> } {
  let markSent!: () => void;
  const sent = new Promise<void>((r) => (markSent = r));
  const result = new Promise<{ status?: number; body?: string; error?: string }>((resolve) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: `/v1/facts/${FACT}/events`,
        headers: { authorization: env.auth().authorization, "content-type": "application/json", "content-length": body.length },
      },
      (res) => {
        let text = "";
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode, body: text }));
        res.on("error", (e) => resolve({ error: e.message }));
      },
    );
    req.on("error", (e) => resolve({ error: e.message }));
    const half = Math.floor(body.length / 2);
    req.write(body.subarray(0, half), () => {
      void between().then(() => {
        req.end(body.subarray(half), () => markSent());
      });
    });
  });
  return { result, sent };
}

async function storedCount(prefix: string): Promise<{ users: number; rows: number }> {
  const r = await env.ctx.db.pool.query(
    `SELECT (SELECT count(*)::int FROM app_user WHERE external_id LIKE $1) AS users,
            (SELECT count(*)::int FROM activity_day a JOIN app_user u USING (user_key) WHERE u.external_id LIKE $1) AS rows`,
    [`${prefix}-%`],
  );
  return r.rows[0];
}

/** Until a session of the test database waits on a lock with `queryStart` as its statement. */
async function waitForLockWait(queryStart: string, present = true) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await env.ctx.db.pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state <> 'idle' AND query LIKE $1 AND pid <> pg_backend_pid()`,
      [`${queryStart}%`],
    );
    if ((r.rows[0].n > 0) === present) return;
    if (Date.now() > deadline) throw new Error(`no session ${present ? "waiting on" : "left running"} ${queryStart}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** Holds the fact's row: an ingestion's transaction then waits at its last statement, everything else written. */
async function holdFactRow() {
  const c = new pg.Client({ connectionString: env.childEnv.DATABASE_URL });
  await c.connect();
  await c.query("BEGIN");
  await c.query(`SELECT 1 FROM fact WHERE name = $1 FOR UPDATE`, [FACT]);
  return c;
}

describe("stopping the server during a large ingestion request", () => {
  it("SIGTERM while the body is still arriving: the request is drained and its batch stored whole", async () => {
    const server = await startServer();
    try {
      const { result } = postInHalves(server.port, batchBody("half"), async () => {
        // Time for the server to read the headers: from then on the request is in flight.
        await new Promise((r) => setTimeout(r, 300));
        server.child.kill("SIGTERM");
        await new Promise((r) => setTimeout(r, 300));
      });
      const answer = await result;
      const stored = await storedCount("half");
      // Whole or nothing, and what the client was told matches what was stored.
      if (answer.status === 202) expect(stored).toEqual({ users: N, rows: N });
      else expect(stored, JSON.stringify(answer)).toEqual({ users: 0, rows: 0 });
      // A graceful stop drains the request it had started to read.
      expect(answer.status, JSON.stringify(answer) + server.output()).toBe(202);
      expect(JSON.parse(answer.body!).accepted).toBe(N);
      expect(await server.exit).toEqual({ code: 0, signal: null });
    } finally {
      await killHard(server.child);
    }
  });

  it("SIGTERM while the batch's transaction is writing: it commits whole and the answer is 202", async () => {
    const server = await startServer();
    const blocker = await holdFactRow();
    try {
      const { result, sent } = postInHalves(server.port, batchBody("term"), async () => {});
      await sent;
      await waitForLockWait("UPDATE fact SET");
      server.child.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 300));
      expect(await storedCount("term")).toEqual({ users: 0, rows: 0 }); // not committed yet
      await blocker.query("ROLLBACK");
      const answer = await result;
      expect(answer.status, JSON.stringify(answer) + server.output()).toBe(202);
      expect(await storedCount("term")).toEqual({ users: N, rows: N });
      expect(await server.exit).toEqual({ code: 0, signal: null });
    } finally {
      await blocker.end().catch(() => {});
      await killHard(server.child);
    }
  });

  it("SIGKILL while the batch's transaction is writing: nothing of it is stored", async () => {
    const server = await startServer();
    const blocker = await holdFactRow();
    try {
      const { result, sent } = postInHalves(server.port, batchBody("kill"), async () => {});
      await sent;
      await waitForLockWait("UPDATE fact SET");
      await killHard(server.child);
      const answer = await result;
      expect(answer.status, JSON.stringify(answer)).toBeUndefined();
      await blocker.query("ROLLBACK");
      // The orphaned transaction gets its lock, then finds its client gone and rolls back.
      await waitForLockWait("UPDATE fact SET", false);
      expect(await storedCount("kill")).toEqual({ users: 0, rows: 0 });
    } finally {
      await blocker.end().catch(() => {});
      await killHard(server.child);
    }
  });
});
