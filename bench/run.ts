// `npm run bench -- <name>`: runs bench/<name>.ts, which prints its figures and writes bench/results/<name>.json.
const BENCHES = ["ingest", "activation", "audiences", "campaigns", "load"] as const;

const name = process.argv[2];
if (!name || !BENCHES.includes(name as (typeof BENCHES)[number])) {
  console.error(`usage: npm run bench -- <${BENCHES.join("|")}> [options]`);
  process.exit(2);
}
await import(`./${name}.ts`);
