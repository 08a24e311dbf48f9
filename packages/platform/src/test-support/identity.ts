import { randomBytes } from "node:crypto";
import { createAuthority, type LocalAuthority } from "../identity/authority/authority.js";
import { authorityMigrations } from "../identity/authority/store.js";
import { derToPem, type TlsIdentity } from "../mesh/svid.js";
import { createSqliteStorage } from "../storage/sqlite.js";
import type { Storage } from "../storage/types.js";

/** A real authority on an in-memory SQLite database, for tests that need SVIDs. */
export async function testAuthority(trustDomain = "hexr.local"): Promise<{ authority: LocalAuthority; storage: Storage }> {
  const storage = createSqliteStorage({ filename: ":memory:" });
  await storage.migrate(authorityMigrations);
  const authority = await createAuthority({ storage, trustDomain, masterKey: randomBytes(32) });
  return { authority, storage };
}

/** Mints an X.509-SVID and returns it as the PEM material a TLS endpoint needs. */
export async function mintTlsIdentity(authority: LocalAuthority, spiffeId: string, ttlSeconds?: number): Promise<TlsIdentity> {
  const svid = await authority.mintX509Svid(spiffeId, ttlSeconds ? { ttlSeconds } : {});
  return {
    spiffeId,
    certChainPem: svid.certChainDer.map((d) => derToPem(d)).join(""),
    keyPem: derToPem(svid.privateKeyPkcs8Der, "PRIVATE KEY"),
    bundlePem: authority
      .x509Authorities()
      .map((d) => derToPem(d))
      .join(""),
    expiresAt: svid.expiresAt,
  };
}
