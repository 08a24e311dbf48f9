import { canonicalizeAgentCard, verifyAgentCardSignature } from "@a2a-js/sdk";
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authorityFixture, type AuthorityFixture } from "../identity/authority/test-support/fixtures.js";
import { buildCardV03, buildCardV1, signCard, signerFromSvid, verifyCardSignature, type CardSigner } from "./card.js";
import { canonicalize, cardSigningPayload } from "./jcs.js";

describe("RFC 8785 canonicalization", () => {
  it("matches the RFC's example (numbers, strings, literals)", () => {
    const input = JSON.parse(
      '{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}',
    );
    expect(canonicalize(input)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it("sorts members by UTF-16 code units (the RFC's sorting example)", () => {
    const input = {
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis",
    };
    // Compared as text: JSON.parse would put the integer-like key "1" first again.
    const order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\ud83d\ude00", "\ufb33"];
    expect(canonicalize(input)).toBe(
      `{${order.map((k) => `${JSON.stringify(k)}:${JSON.stringify(input[k as keyof typeof input])}`).join(",")}}`,
    );
  });

  it("refuses what I-JSON cannot carry", () => {
    expect(() => canonicalize({ a: Number.NaN })).toThrow(/finite/);
    expect(() => canonicalize({ a: "\ud800" })).toThrow(/surrogate/);
  });

  it("drops default values before signing (A2A §8.4.1 example)", () => {
    const card = {
      name: "Example Agent",
      description: "",
      capabilities: { streaming: false, pushNotifications: false, extensions: [] },
      skills: [],
      signatures: [{ protected: "x", signature: "y" }],
    };
    expect(cardSigningPayload(card)).toBe(
      '{"capabilities":{"pushNotifications":false,"streaming":false},"name":"Example Agent"}',
    );
  });
});

describe("agent card signatures with the agent's SVID", () => {
  let f: AuthorityFixture;
  let signer: CardSigner;
  let anchors: Buffer[];
  const writer = "spiffe://hexr.local/agent/acme/writer/main";
  const metadata = {
    name: "writer",
    description: "Writes articles",
    skills: [
      {
        id: "write",
        name: "Write",
        description: "Writes an article on a topic",
        tags: ["writing"],
        examples: ["write about SPIFFE"],
      },
    ],
  };

  beforeAll(async () => {
    f = await authorityFixture();
    signer = signerFromSvid(await f.authority.mintX509Svid(writer));
    anchors = f.authority.x509Authorities();
  });
  afterAll(async () => f.dispose());

  const card = () =>
    signCard(buildCardV1({ metadata, url: "https://writer.example/a2a", spiffeId: writer, security: "mtls" }), signer);

  it("names the SPIFFE ID, and verifies against the trust bundle and the expected identity", () => {
    const c = card();
    expect(JSON.stringify(c["capabilities"])).toContain(writer);
    const header = JSON.parse(
      Buffer.from((c["signatures"] as Array<{ protected: string }>)[0]!.protected, "base64url").toString(),
    ) as Record<string, unknown>;
    expect(header).toMatchObject({ alg: "ES256", typ: "JOSE", kid: signer.kid });
    expect(verifyCardSignature(c, { trustAnchors: anchors, expectedSpiffeId: writer })).toEqual({
      spiffeId: writer,
      kid: signer.kid,
    });
  });

  it("rejects a tampered card, another identity, a foreign trust bundle and an unsigned card", async () => {
    const c = card();
    expect(() => verifyCardSignature({ ...c, description: "Steals secrets" }, { trustAnchors: anchors })).toThrow(
      /does not match/,
    );
    expect(() =>
      verifyCardSignature(c, { trustAnchors: anchors, expectedSpiffeId: "spiffe://hexr.local/agent/acme/reader/main" }),
    ).toThrow(/expected spiffe:\/\/hexr.local\/agent\/acme\/reader\/main/);
    const other = await authorityFixture();
    try {
      expect(() => verifyCardSignature(c, { trustAnchors: other.authority.x509Authorities() })).toThrow(/trust bundle/);
      // A card signed by another trust domain's SVID does not verify here either.
      const foreign = signCard(
        buildCardV1({ metadata, url: "https://x", spiffeId: writer, security: "mtls" }),
        signerFromSvid(await other.authority.mintX509Svid(writer)),
      );
      expect(() => verifyCardSignature(foreign, { trustAnchors: anchors })).toThrow(/no valid signature/);
    } finally {
      await other.dispose();
    }
    const { signatures: _s, ...unsigned } = c;
    expect(() => verifyCardSignature(unsigned, { trustAnchors: anchors })).toThrow(/no signature/);
  });

  it("rejects an expired SVID", () => {
    const c = card();
    expect(() => verifyCardSignature(c, { trustAnchors: anchors, clock: () => Date.now() + 2 * 24 * 3600_000 })).toThrow(
      /expired/,
    );
  });

  it("@a2a-js/sdk canonicalizes the Hexr card to the same bytes and verifies its signature", async () => {
    const c = card();
    expect(canonicalizeAgentCard(c as never)).toBe(cardSigningPayload(c));
    const leaf = new X509Certificate(Buffer.from(signer.x5c[0]!, "base64"));
    let asked: string | undefined;
    await verifyAgentCardSignature(async (kid) => {
      asked = kid;
      return leaf.publicKey;
    })(c as never);
    expect(asked).toBe(signer.kid);
    await expect(verifyAgentCardSignature(async () => leaf.publicKey)({ ...c, name: "evil" } as never)).rejects.toThrow(
      /No valid signatures/,
    );
  });

  it("signs the v0.3 card over its own canonical form", () => {
    const c = signCard(buildCardV03({ metadata, url: "https://writer.example/a2a", spiffeId: writer, security: "mtls" }), signer);
    expect(c["protocolVersion"]).toBe("0.3.0");
    expect(verifyCardSignature(c, { trustAnchors: anchors, expectedSpiffeId: writer }).spiffeId).toBe(writer);
  });
});
