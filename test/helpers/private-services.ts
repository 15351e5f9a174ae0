import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

/**
 * Private PostgreSQL and Redis servers for fault tests: each test that stops or restarts a server
 * starts its own, on a free loopback port and in a temp directory, and never touches the shared ones.
 */

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function waitUntil(what: string, ok: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`${what}: timed out`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const portAnswers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });

/**
 * A redis-server of its own, by default with an append-only file synced on every write, as a
 * production Redis under BullMQ is configured: a restart (even a kill) keeps the queues.
 */
export class PrivateRedis {
  private proc: ChildProcess | null = null;
  private constructor(readonly port: number, readonly dir: string, readonly persistent: boolean) {}

  /** `persistent: false` is a Redis that forgets everything when it restarts (like a cache). */
  static async start(options: { persistent?: boolean } = {}): Promise<PrivateRedis> {
    const r = new PrivateRedis(await freePort(), mkdtempSync(path.join(os.tmpdir(), "aa-redis-")), options.persistent ?? true);
    await r.start();
    return r;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir, "--save", "", "--appendonly", this.persistent ? "yes" : "no", "--appendfsync", "always"];
    this.proc = spawn("redis-server", args, { stdio: "ignore" });
    const proc = this.proc;
    await waitUntil("private redis start", async () => proc.exitCode === null && (await portAnswers(this.port)));
  }

  /** A crash: SIGKILL, no shutdown save (the append-only file has every write already). */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await exited;
    this.proc = null;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A PostgreSQL 15 cluster of its own (initdb into a temp directory, pg_ctl on a free port, its unix
 * socket in that directory). initdb refuses to run as root, so as root it runs as the postgres user.
 */
export class PrivatePostgres {
  private constructor(readonly port: number, readonly dir: string) {}

  static binDir = process.env.PG_BIN_DIR ?? "/usr/lib/postgresql/15/bin";

  static async start(): Promise<PrivatePostgres> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "aa-pg-"));
    const pg = new PrivatePostgres(await freePort(), dir);
    if (process.getuid?.() === 0) chownSync(dir, ...postgresIds());
    pg.run("initdb", ["-D", pg.dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
    await pg.start();
    return pg;
  }

  get dataDir() {
    return path.join(this.dir, "data");
  }

  url(database: string) {
    return `postgresql://postgres@127.0.0.1:${this.port}/${database}`;
  }

  private run(tool: string, args: string[]) {
    const bin = path.join(PrivatePostgres.binDir, tool);
    const [cmd, argv] = process.getuid?.() === 0 ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
    const res = spawnSync(cmd, argv, { encoding: "utf8", timeout: 60_000 });
    if (res.status !== 0) throw new Error(`${tool} failed (${res.status}): ${res.stderr || res.stdout}`);
  }

  async start(): Promise<void> {
    const opts = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60 -c shared_buffers=32MB`;
    this.run("pg_ctl", ["-D", this.dataDir, "-o", opts, "-l", path.join(this.dir, "log"), "-w", "-t", "30", "start"]);
  }

  /** `fast`: a clean restart (sessions are terminated); `immediate`: a crash, recovery at the next start. */
  async stopServer(mode: "fast" | "immediate" = "fast"): Promise<void> {
    this.run("pg_ctl", ["-D", this.dataDir, "-m", mode, "-w", "-t", "30", "stop"]);
  }

  async destroy(): Promise<void> {
    try {
      await this.stopServer("immediate");
    } catch {
      // Already stopped.
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function postgresIds(): [number, number] {
  const uid = Number(spawnSync("id", ["-u", "postgres"], { encoding: "utf8" }).stdout.trim());
  const gid = Number(spawnSync("id", ["-g", "postgres"], { encoding: "utf8" }).stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error("running as root needs a 'postgres' user to run initdb");
  return [uid, gid];
}

/** A worker process (`src/worker.ts`) on the given environment; its output is kept for failures. */
export function spawnWorker(env: Record<string, string>): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, ["--import", "tsx", "src/worker.ts"], {
    env: { ...process.env, ...env, WORKERS: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  return Object.assign(child, { output: () => out });
}

export async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}
