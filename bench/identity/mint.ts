/**
 * bench/identity/mint: the embedded SPIFFE authority on one core, each figure beside the raw
 * node:crypto operation with the same key in the same run:
 *
 *   - X.509-SVIDs minted per second (fresh P-256 leaf key, DER encoding, ECDSA signature by the
 *     intermediate) vs raw crypto.sign of a same-size TBSCertificate with the intermediate's key, and
 *     vs raw leaf key generation + that signature (what remains is encoding);
 *   - JWT-SVIDs minted per second vs raw crypto.sign (ES256) with the JWT key;
 *   - JWT-SVIDs validated per second (strict checks) vs raw crypto.verify with the same public key,
 *     and jose's jwtVerify with a pre-imported key for reference.
 *
 *   npx tsx bench/identity/mint.ts [--seconds 2] [--rounds 3]
 *
 * The process pins itself to CPU 0 with taskset when available (set HEXR_BENCH_NO_PIN=1 to skip).
 */
import { spawnSync } from "node:child_process";
import { createECDH, createPublicKey, randomBytes, sign, verify, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { importJWK, jwtVerify } from "jose";
import { LocalAuthority } from "../../packages/platform/src/identity/authority/authority.js";
import { privateKeyFromPkcs8 } from "../../packages/platform/src/identity/authority/keys.js";
import { authorityMigrations } from "../../packages/platform/src/identity/authority/store.js";
import { parseCertificate } from "../../packages/platform/src/identity/authority/x509.js";
import { open } from "../../packages/platform/src/keys/master-key.js";
import { createSqliteStorage } from "../../packages/platform/src/storage/sqlite.js";
import { printTable } from "../lib/stats.js";

if (!process.env["HEXR_BENCH_PINNED"] && !process.env["HEXR_BENCH_NO_PIN"]) {
  const probe = spawnSync("taskset", ["-c", "0", "true"]);
  if (probe.status === 0) {
    const r = spawnSync("taskset", ["-c", "0", process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
      stdio: "inherit",
      env: { ...process.env, HEXR_BENCH_PINNED: "1" },
    });
    process.exit(r.status ?? 1);
  }
}

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
};
const SECONDS = arg("seconds", 2);
const ROUNDS = arg("rounds", 3);

/** Runs `fn` in batches for ~SECONDS and returns operations per second. */
async function rate(fn: () => unknown | Promise<unknown>): Promise<number> {
  const deadline = performance.now() + SECONDS * 1000;
  let n = 0;
  const start = performance.now();
  while (performance.now() < deadline) {
    for (let i = 0; i < 50; i++) {
      const r = fn();
      if (r instanceof Promise) await r;
    }
    n += 50;
  }
  return (n / (performance.now() - start)) * 1000;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "hexr-bench-identity-"));
  const storage = await createSqliteStorage({ filename: join(dir, "bench.db") });
  await storage.migrate(authorityMigrations);
  const masterKey = randomBytes(32);
  const authority = new LocalAuthority({ storage, trustDomain: "hexr.local", masterKey, issuer: "http://127.0.0.1:7420" });
  await authority.init();

  // The same keys the authority signs with, unsealed from storage as the authority does it.
  const slot = (await storage.get<{ id: string; x509_sealed_key: string; jwt_sealed_key: string }>(
    "SELECT id, x509_sealed_key, jwt_sealed_key FROM identity_slots WHERE state = 'active'",
  ))!;
  const caKey: KeyObject = privateKeyFromPkcs8(
    open(masterKey, Buffer.from(slot.x509_sealed_key, "base64"), `hexr/identity/slot/${slot.id}/x509`),
  );
  const jwtKey: KeyObject = privateKeyFromPkcs8(
    open(masterKey, Buffer.from(slot.jwt_sealed_key, "base64"), `hexr/identity/slot/${slot.id}/jwt`),
  );
  const jwtPub = createPublicKey(jwtKey);

  const ID = "spiffe://hexr.local/agent/acme-corp/researcher/main";
  const AUD = "spiffe://hexr.local/system/vault";
  const sample = await authority.mintX509Svid(ID);
  const tbs = parseCertificate(sample.certChainDer[0]!).tbsDer;
  const token = (await authority.mintJwtSvid(ID, [AUD], { ttlSeconds: 3600 })).token;
  const signingInput = Buffer.from(token.slice(0, token.lastIndexOf(".")));
  const jwtSig = Buffer.from(token.slice(token.lastIndexOf(".") + 1), "base64url");
  const joseKey = await importJWK(authority.jwks().keys[0] as never, "ES256");

  // Sanity: the baselines do the same cryptographic work the authority does.
  if (!verify("sha256", signingInput, { key: jwtPub, dsaEncoding: "ieee-p1363" }, jwtSig))
    throw new Error("baseline key mismatch");
  await authority.validateJwtSvid(token, AUD);

  const cases: Array<{ name: string; hexr: () => unknown; raw: () => unknown; rawName: string }> = [
    {
      name: "X.509-SVID mint",
      hexr: () => authority.mintX509Svid(ID),
      rawName: "crypto.sign(TBS, CA key)",
      raw: () => sign("sha256", tbs, caKey),
    },
    {
      name: "X.509-SVID mint",
      hexr: () => authority.mintX509Svid(ID),
      rawName: "P-256 keygen + crypto.sign(TBS)",
      raw: () => {
        createECDH("prime256v1").generateKeys();
        return sign("sha256", tbs, caKey);
      },
    },
    {
      name: "JWT-SVID mint",
      hexr: () => authority.mintJwtSvid(ID, [AUD]),
      rawName: "crypto.sign(ES256, JWT key)",
      raw: () => sign("sha256", signingInput, { key: jwtKey, dsaEncoding: "ieee-p1363" }),
    },
    {
      name: "JWT-SVID validate",
      hexr: () => authority.validateJwtSvid(token, AUD),
      rawName: "crypto.verify(ES256, JWT key)",
      raw: () => verify("sha256", signingInput, { key: jwtPub, dsaEncoding: "ieee-p1363" }, jwtSig),
    },
    {
      name: "JWT-SVID validate (jose, reference)",
      hexr: () => jwtVerify(token, joseKey, { audience: AUD, algorithms: ["ES256"] }),
      rawName: "crypto.verify(ES256, JWT key)",
      raw: () => verify("sha256", signingInput, { key: jwtPub, dsaEncoding: "ieee-p1363" }, jwtSig),
    },
  ];

  // Warm up JIT and caches.
  for (const c of cases) {
    for (let i = 0; i < 500; i++) {
      await c.hexr();
      c.raw();
    }
  }

  const results: Array<Record<string, string | number>> = [];
  for (const c of cases) {
    const h: number[] = [];
    const r: number[] = [];
    // Interleave so that drift (thermal, other load) hits both sides alike.
    for (let round = 0; round < ROUNDS; round++) {
      h.push(await rate(c.hexr));
      r.push(await rate(c.raw));
    }
    const hexr = median(h);
    const raw = median(r);
    results.push({
      operation: c.name,
      "hexr ops/s": Math.round(hexr),
      "µs/op": (1e6 / hexr).toFixed(1),
      baseline: c.rawName,
      "baseline ops/s": Math.round(raw),
      "baseline µs/op": (1e6 / raw).toFixed(1),
      "cost ratio (hexr/raw)": (raw / hexr).toFixed(2),
    });
  }

  console.log(
    `\nbench/identity/mint — node ${process.version}, ${process.env["HEXR_BENCH_PINNED"] ? "pinned to CPU 0" : "not pinned"}, ${SECONDS}s x ${ROUNDS} rounds per figure (median)\n`,
  );
  printTable(results);
  const x509 = results[0]!;
  const validate = results[3]!;
  console.log(
    `\nX.509-SVIDs/s: ${x509["hexr ops/s"]} (goal >= 2000: ${Number(x509["hexr ops/s"]) >= 2000 ? "met" : "NOT met"}); ` +
      `JWT validate cost vs raw verify: ${validate["cost ratio (hexr/raw)"]}x (goal <= 1.5x: ${Number(validate["cost ratio (hexr/raw)"]) <= 1.5 ? "met" : "NOT met"})`,
  );
  await storage.close();
  rmSync(dir, { recursive: true, force: true });
}

await main();
