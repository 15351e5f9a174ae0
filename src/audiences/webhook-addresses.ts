import dns from "node:dns";
import { BlockList, isIP, type LookupFunction } from "node:net";

/**
 * Where webhooks may not go: every address that is not globally reachable (IANA's special-purpose
 * registries): loopback, RFC 1918, carrier-grade NAT, link-local (cloud metadata at 169.254.169.254,
 * fe80::/10), unique-local, multicast, documentation and reserved ranges. An admin key must not turn
 * the service into a client of the network it runs in (Redis, PostgreSQL, internal HTTP services).
 */
const SPECIAL_PURPOSE: ReadonlyArray<[string, number, "ipv4" | "ipv6"]> = [
  ["0.0.0.0", 8, "ipv4"], // "this network"; 0.0.0.0 reaches the local host on Linux
  ["10.0.0.0", 8, "ipv4"],
  ["100.64.0.0", 10, "ipv4"], // carrier-grade NAT
  ["127.0.0.0", 8, "ipv4"],
  ["169.254.0.0", 16, "ipv4"], // link-local, cloud metadata
  ["172.16.0.0", 12, "ipv4"],
  ["192.0.0.0", 24, "ipv4"],
  ["192.0.2.0", 24, "ipv4"],
  ["192.88.99.0", 24, "ipv4"],
  ["192.168.0.0", 16, "ipv4"],
  ["198.18.0.0", 15, "ipv4"],
  ["198.51.100.0", 24, "ipv4"],
  ["203.0.113.0", 24, "ipv4"],
  ["224.0.0.0", 4, "ipv4"], // multicast
  ["240.0.0.0", 4, "ipv4"], // reserved, broadcast
  ["::", 96, "ipv6"], // unspecified, loopback (::1) and the deprecated IPv4-compatible ::a.b.c.d
  ["::ffff:0:0:0", 96, "ipv6"], // IPv4-translated (SIIT)
  ["64:ff9b:1::", 48, "ipv6"], // local-use IPv4/IPv6 translation
  ["100::", 64, "ipv6"], // discard-only
  ["2001::", 23, "ipv6"], // IETF protocol assignments (Teredo among them)
  ["2001:db8::", 32, "ipv6"], // documentation
  ["2002::", 16, "ipv6"], // 6to4: could wrap any IPv4 address
  ["3fff::", 20, "ipv6"], // documentation (RFC 9637)
  ["5f00::", 16, "ipv6"], // segment routing (SRv6) SIDs (RFC 9602)
  ["fc00::", 7, "ipv6"], // unique-local
  ["fe80::", 10, "ipv6"], // link-local
  ["fec0::", 10, "ipv6"], // site-local (deprecated)
  ["ff00::", 8, "ipv6"], // multicast
];

const forbidden = new BlockList();
for (const [address, prefix, family] of SPECIAL_PURPOSE) forbidden.addSubnet(address, prefix, family);

/** The eight 16-bit groups of an IPv6 address. */
function ipv6Groups(ipv6: string): number[] {
  // The URL parser writes an IPv6 address in its one canonical form: hex groups, `::` at most once.
  const canonical = new URL(`http://[${ipv6}]/`).hostname.slice(1, -1);
  const [head, tail] = canonical.split("::") as [string, string | undefined];
  const groups = (part: string | undefined) => (part ? part.split(":").map((g) => parseInt(g, 16)) : []);
  const h = groups(head), t = groups(tail);
  return [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
}

/** The IPv4 address an IPv6 address carries (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d), or null. */
function embeddedIpv4(ipv6: string): string | null {
  const g = ipv6Groups(ipv6);
  const mapped = g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff;
  const nat64 = g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0);
  if (!mapped && !nat64) return null;
  return `${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`;
}

const allowLists = new Map<string, BlockList>();
function allowListOf(networks: readonly string[]): BlockList {
  const cacheKey = networks.join(",");
  let list = allowLists.get(cacheKey);
  if (!list) {
    list = new BlockList();
    for (const entry of networks) {
      const [address, bits] = entry.split("/") as [string, string | undefined];
      const family = isIP(address) === 6 ? "ipv6" : "ipv4";
      if (bits === undefined) list.addAddress(address, family);
      else list.addSubnet(address, Number(bits), family);
    }
    allowLists.set(cacheKey, list);
  }
  return list;
}

/**
 * Why a webhook may not connect to `address` (an IP address), or null when it may: a special-purpose
 * address is refused unless `allowed` (WEBHOOK_ALLOW_NETWORKS) lists it.
 */
export function forbiddenAddressReason(address: string, allowed: readonly string[]): string | null {
  const family = isIP(address);
  if (family === 0) return `${address} is not an IP address`;
  const type = family === 6 ? "ipv6" : "ipv4";
  const v4 = type === "ipv6" ? embeddedIpv4(address) : null;
  const allow = allowListOf(allowed);
  if (allow.check(address, type) || (v4 !== null && allow.check(v4, "ipv4"))) return null;
  if (forbidden.check(address, type) || (v4 !== null && forbidden.check(v4, "ipv4")))
    return `${address} is a private, loopback, link-local or reserved address (WEBHOOK_ALLOW_NETWORKS lists those webhooks may reach)`;
  return null;
}

/** The host of a URL as the connection uses it: an IPv6 literal without its brackets, no trailing dot. */
export function hostOf(url: URL): string {
  return url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname.replace(/\.+$/, "");
}

const isLocalhostName = (host: string) => host.toLowerCase() === "localhost" || host.toLowerCase().endsWith(".localhost");

/**
 * Why a webhook URL can be refused when it is registered, or null: an address written into it (in any
 * of the forms the URL parser reads as one: `2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]`) or the name
 * localhost that no resolver may send elsewhere (RFC 6761). Other names are checked at each delivery,
 * on the addresses the connection is made to (see guardedLookup).
 */
export function webhookUrlProblem(raw: string, allowed: readonly string[]): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "not a valid URL";
  }
  const host = hostOf(url);
  if (isIP(host)) return forbiddenAddressReason(host, allowed);
  if (isLocalhostName(host)) return forbiddenAddressReason("127.0.0.1", allowed) && `${host} is the local host (WEBHOOK_ALLOW_NETWORKS lists those webhooks may reach)`;
  return null;
}

export class ForbiddenAddressError extends Error {
  /** Written in the URL (refused at every attempt alike), not what a name resolved to this time. */
  constructor(message: string, readonly inUrl = false) {
    super(message);
  }
}

/**
 * The DNS lookup a webhook's connection makes: the name is resolved once, every address it resolves
 * to is checked, and the connection goes to those very addresses. A check on a resolution of its own
 * would let a name that answers a public address first and a private one next (DNS rebinding) through.
 */
export function guardedLookup(allowed: readonly string[], resolve: typeof dns.lookup = dns.lookup): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, "", 0);
      const list = addresses as unknown as dns.LookupAddress[];
      for (const a of list) {
        const why = forbiddenAddressReason(a.address, allowed);
        if (why) return callback(new ForbiddenAddressError(`${hostname}: ${why}`), "", 0);
      }
      if (list.length === 0) return callback(Object.assign(new Error(`${hostname} resolves to no address`), { code: "ENOTFOUND" }), "", 0);
      if (options.all) (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, list);
      else callback(null, list[0]!.address, list[0]!.family);
    });
  };
}
