import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { open } from "../../keys/master-key.js";
import { storageFixtures } from "../../test-support/storage.js";
import { exportPkcs8, privateKeyFromPkcs8 } from "./keys.js";
import { authorityFixture, type AuthorityFixture } from "./test-support/fixtures.js";

const ID = "spiffe://hexr.local/agent/acme-corp/researcher/main";

describe.each(storageFixtures.map((make) => ({ name: make.name, make })))(
  "authority persistence ($name)",
  ({ make: makeFixture }) => {
    let f: AuthorityFixture | undefined;
    afterEach(async () => {
      await f?.dispose();
      f = undefined;
    });

    it("stores private keys only sealed: no PEM, no PKCS#8 DER in any row", async () => {
      f = await authorityFixture({ fixture: makeFixture() });
      const roots = await f.storage.all<Record<string, unknown>>("SELECT * FROM identity_roots");
      const slots = await f.storage.all<Record<string, unknown>>("SELECT * FROM identity_slots");
      expect(roots).toHaveLength(1);
      expect(slots).toHaveLength(1);
      const dump = JSON.stringify([roots, slots]);
      expect(dump).not.toMatch(/PRIVATE KEY/);
      // PKCS#8 of a P-256 key starts with these bytes (SEQUENCE, version 0, ecPublicKey): base64 "MIGHAgEAMBMG".
      expect(dump).not.toContain("MIGHAgEAMBMG");
      const sealed = Buffer.from(String(slots[0]!["jwt_sealed_key"]), "base64");
      // The sealed blob opens only with the master key and the row-bound AAD.
      const pkcs8 = open(f.masterKey, sealed, `hexr/identity/slot/${String(slots[0]!["id"])}/jwt`);
      expect(privateKeyFromPkcs8(pkcs8).asymmetricKeyType).toBe("ec");
      expect(() => open(f!.masterKey, sealed, `hexr/identity/slot/${String(slots[0]!["id"])}/x509`)).toThrow(
        /failed authentication/,
      );
      expect(exportPkcs8(privateKeyFromPkcs8(pkcs8)).equals(pkcs8)).toBe(true);
    });

    it("keeps the same CA and JWT key across a restart, and old SVIDs still verify", async () => {
      f = await authorityFixture({ fixture: makeFixture() });
      const x509 = await f.authority.mintX509Svid(ID);
      const jwt = await f.authority.mintJwtSvid(ID, ["aud"]);
      const bundle = f.authority.bundle();
      const again = await f.reopen();
      expect(again.bundle()).toEqual(bundle);
      expect(again.verifyX509Svid(x509.certChainDer).spiffeId).toBe(ID);
      await expect(again.validateJwtSvid(jwt.token, "aud")).resolves.toMatchObject({ spiffeId: ID });
      // The restarted authority signs with the same intermediate.
      const next = await again.mintX509Svid(ID);
      expect(next.certChainDer[1]!.equals(x509.certChainDer[1]!)).toBe(true);
      expect(await f.storage.all("SELECT id FROM identity_slots")).toHaveLength(1);
    });

    it("fails with a clear error under the wrong master key, and leaves the stored CA intact", async () => {
      f = await authorityFixture({ fixture: makeFixture() });
      const before = await f.storage.all("SELECT * FROM identity_slots ORDER BY id");
      const err = await f.reopen({ masterKey: randomBytes(32) }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: "identity.ca_keys_unreadable", kind: "failed_precondition" });
      expect((err as Error).message).toMatch(/master key/);
      expect(await f.storage.all("SELECT * FROM identity_slots ORDER BY id")).toEqual(before);
      // The right key still works afterwards.
      await expect(f.reopen()).resolves.toBeDefined();
    });

    it("gives a second trust domain its own CA in the same database", async () => {
      const fixture = makeFixture();
      f = await authorityFixture({ fixture });
      const other = await authorityFixture({ fixture, trustDomain: "prod.example" });
      try {
        expect(other.authority.x509Authorities()[0]!.equals(f.authority.x509Authorities()[0]!)).toBe(false);
        const svid = await other.authority.mintJwtSvid("spiffe://prod.example/agent/a/b/c", ["x"]);
        await expect(f.authority.validateJwtSvid(svid.token, "x")).rejects.toMatchObject({ details: { reason: "unknown_kid" } });
      } finally {
        await other.storage.close();
      }
    });
  },
);
