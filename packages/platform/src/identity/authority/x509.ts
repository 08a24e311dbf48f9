import { createHash, sign, type KeyObject } from "node:crypto";
import {
  bitString,
  bool,
  children,
  DerError,
  explicit,
  implicitPrimitive,
  octetString,
  oid,
  readNode,
  readOid,
  readTime,
  seq,
  set,
  smallInt,
  TAG,
  time,
  tlv,
  uintFromBytes,
  utf8,
  type DerNode,
} from "./der.js";
import { OID, pointFromSpki } from "./keys.js";

export const X509_OID = {
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  organizationName: "2.5.4.10",
  commonName: "2.5.4.3",
  serialNumber: "2.5.4.5",
} as const;

/** KeyUsage bit numbers (RFC 5280 §4.2.1.3). */
export const KEY_USAGE = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
} as const;

const SIGNATURE_ALGORITHM = seq(oid(OID.ecdsaWithSha256));
const VERSION_3 = explicit(0, smallInt(2));

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octetString(value)) : seq(oid(id), octetString(value));
}

/** A Name with one attribute per RDN; `serialNumber` is a PrintableString, others UTF8String. */
export function x500Name(attrs: Array<[string, string]>): Buffer {
  return seq(
    ...attrs.map(([type, value]) =>
      set(seq(oid(type), type === X509_OID.serialNumber ? tlv(TAG.PRINTABLE_STRING, Buffer.from(value, "ascii")) : utf8(value))),
    ),
  );
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function subjectKeyId(spkiDer: Buffer): Buffer {
  return createHash("sha1").update(pointFromSpki(spkiDer)).digest();
}

/** A positive 16-byte serial with 126 random bits; the fixed top bits keep it minimal and non-negative. */
export function randomSerial(random: (n: number) => Buffer): Buffer {
  const b = Buffer.from(random(16));
  b[0] = (b[0]! & 0x3f) | 0x40;
  return b;
}

function keyUsageBits(...bits: number[]): Buffer {
  let byte = 0;
  for (const bit of bits) byte |= 0x80 >> bit;
  // DER: the unused-bits count excludes trailing zero bits.
  let unused = 0;
  while (unused < 7 && !(byte & (1 << unused))) unused++;
  return bitString(Buffer.from([byte]), unused);
}

function signCertificate(tbs: Buffer, signer: KeyObject): Buffer {
  return seq(tbs, SIGNATURE_ALGORITHM, bitString(sign("sha256", tbs, signer)));
}

export interface SignerInfo {
  subjectDer: Buffer;
  subjectKeyId: Buffer;
  privateKey: KeyObject;
  notBefore: number;
  notAfter: number;
}

export interface CaCertificateInput {
  subject: Buffer;
  spkiDer: Buffer;
  serial: Buffer;
  notBefore: number;
  notAfter: number;
  /** The trust domain's own SPIFFE ID (no path), as the spec asks signing certificates to carry. */
  trustDomainId: string;
  /** Absent for a self-signed root; `selfKey` then signs. */
  issuer?: SignerInfo;
  selfKey?: KeyObject;
  pathLen?: number;
}

/** A signing certificate: cA=true, keyCertSign+cRLSign (critical), SKI/AKI, URI SAN = trust domain ID. */
export function buildCaCertificate(input: CaCertificateInput): Buffer {
  const ski = subjectKeyId(input.spkiDer);
  const akiKeyId = input.issuer ? input.issuer.subjectKeyId : ski;
  const bc = input.pathLen === undefined ? seq(bool(true)) : seq(bool(true), smallInt(input.pathLen));
  const exts = seq(
    extension(X509_OID.basicConstraints, true, bc),
    extension(X509_OID.keyUsage, true, keyUsageBits(KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign)),
    extension(X509_OID.subjectKeyIdentifier, false, octetString(ski)),
    extension(X509_OID.authorityKeyIdentifier, false, seq(implicitPrimitive(0, akiKeyId))),
    extension(X509_OID.subjectAltName, false, seq(implicitPrimitive(6, Buffer.from(input.trustDomainId, "ascii")))),
  );
  const tbs = seq(
    VERSION_3,
    uintFromBytes(input.serial),
    SIGNATURE_ALGORITHM,
    input.issuer ? input.issuer.subjectDer : input.subject,
    seq(time(input.notBefore), time(input.notAfter)),
    input.subject,
    input.spkiDer,
    explicit(3, exts),
  );
  const signer = input.issuer ? input.issuer.privateKey : input.selfKey;
  if (!signer) throw new Error("a self-signed certificate needs selfKey");
  return signCertificate(tbs, signer);
}

const LEAF_SUBJECT = x500Name([[X509_OID.organizationName, "Hexr"]]);
const LEAF_KEY_USAGE = extension(X509_OID.keyUsage, true, keyUsageBits(KEY_USAGE.digitalSignature));
const LEAF_EKU = extension(X509_OID.extKeyUsage, false, seq(oid(X509_OID.serverAuth), oid(X509_OID.clientAuth)));
// cA=false is the DEFAULT, so DER encodes it as an empty SEQUENCE.
const LEAF_BASIC_CONSTRAINTS = extension(X509_OID.basicConstraints, true, seq());

export interface LeafInput {
  spiffeId: string;
  dnsNames?: readonly string[];
  spkiDer: Buffer;
  serial: Buffer;
  notBefore: number;
  notAfter: number;
}

/**
 * Mints X.509-SVID leaves for one signing certificate. The parts that are the same for every leaf
 * of this issuer are encoded once.
 */
export class LeafMinter {
  private readonly aki: Buffer;

  constructor(readonly issuer: SignerInfo) {
    this.aki = extension(X509_OID.authorityKeyIdentifier, false, seq(implicitPrimitive(0, issuer.subjectKeyId)));
  }

  mint(input: LeafInput): Buffer {
    const names = [implicitPrimitive(6, Buffer.from(input.spiffeId, "ascii"))];
    for (const dns of input.dnsNames ?? []) names.push(implicitPrimitive(2, Buffer.from(dns, "ascii")));
    const exts = seq(
      LEAF_KEY_USAGE,
      LEAF_EKU,
      LEAF_BASIC_CONSTRAINTS,
      extension(X509_OID.subjectKeyIdentifier, false, octetString(subjectKeyId(input.spkiDer))),
      this.aki,
      extension(X509_OID.subjectAltName, false, seq(...names)),
    );
    const tbs = seq(
      VERSION_3,
      uintFromBytes(input.serial),
      SIGNATURE_ALGORITHM,
      this.issuer.subjectDer,
      seq(time(input.notBefore), time(input.notAfter)),
      LEAF_SUBJECT,
      input.spkiDer,
      explicit(3, exts),
    );
    return signCertificate(tbs, this.issuer.privateKey);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading certificates (for validation and tests)

export interface CertExtension {
  critical: boolean;
  value: Buffer;
}

export interface ParsedCertificate {
  der: Buffer;
  tbsDer: Buffer;
  version: number;
  serialHex: string;
  issuerDer: Buffer;
  subjectDer: Buffer;
  notBefore: number;
  notAfter: number;
  spkiDer: Buffer;
  extensions: Map<string, CertExtension>;
  /** Extension OIDs in the order they appear (duplicates would show twice). */
  extensionOrder: string[];
  signatureAlgorithm: string;
  signature: Buffer;
}

function expectTag(node: DerNode, tag: number, what: string): DerNode {
  if (node.tag !== tag) throw new DerError(`${what}: unexpected tag 0x${node.tag.toString(16)}`);
  return node;
}

export function parseCertificate(der: Buffer): ParsedCertificate {
  const cert = expectTag(readNode(der), TAG.SEQUENCE, "certificate");
  if (cert.end !== der.length) throw new DerError("trailing bytes after certificate");
  const [tbs, sigAlg, sig] = children(cert);
  if (!tbs || !sigAlg || !sig) throw new DerError("certificate: missing fields");
  const t = children(expectTag(tbs, TAG.SEQUENCE, "tbsCertificate"));
  let i = 0;
  let version = 1;
  if (t[0]?.tag === 0xa0) {
    const v = children(t[0])[0];
    version = (v?.value[0] ?? 0) + 1;
    i++;
  }
  const serial = expectTag(t[i++]!, TAG.INTEGER, "serial");
  i++; // signature algorithm inside TBS
  const issuer = expectTag(t[i++]!, TAG.SEQUENCE, "issuer");
  const validity = children(expectTag(t[i++]!, TAG.SEQUENCE, "validity"));
  const subject = expectTag(t[i++]!, TAG.SEQUENCE, "subject");
  const spki = expectTag(t[i++]!, TAG.SEQUENCE, "subjectPublicKeyInfo");
  const extensions = new Map<string, CertExtension>();
  const extensionOrder: string[] = [];
  for (; i < t.length; i++) {
    if (t[i]!.tag !== 0xa3) continue;
    for (const ext of children(children(t[i]!)[0]!)) {
      const parts = children(ext);
      const id = readOid(parts[0]!);
      const critical = parts.length === 3 && parts[1]!.tag === TAG.BOOLEAN && parts[1]!.value[0] !== 0;
      const value = expectTag(parts[parts.length - 1]!, TAG.OCTET_STRING, "extnValue").value;
      extensionOrder.push(id);
      extensions.set(id, { critical, value });
    }
  }
  const sigBits = expectTag(sig, TAG.BIT_STRING, "signature");
  return {
    der,
    tbsDer: tbs.raw,
    version,
    serialHex: serial.value.toString("hex"),
    issuerDer: issuer.raw,
    subjectDer: subject.raw,
    notBefore: readTime(validity[0]!),
    notAfter: readTime(validity[1]!),
    spkiDer: spki.raw,
    extensions,
    extensionOrder,
    signatureAlgorithm: readOid(children(sigAlg)[0]!),
    signature: sigBits.value.subarray(1),
  };
}

export function readBasicConstraints(ext: CertExtension): { ca: boolean; pathLen: number | undefined } {
  const parts = children(readNode(ext.value));
  let ca = false;
  let pathLen: number | undefined;
  for (const p of parts) {
    if (p.tag === TAG.BOOLEAN) ca = p.value[0] !== 0;
    else if (p.tag === TAG.INTEGER) pathLen = p.value.reduce((acc, b) => acc * 256 + b, 0);
  }
  return { ca, pathLen };
}

/** The set KeyUsage bit numbers. */
export function readKeyUsage(ext: CertExtension): Set<number> {
  const node = expectTag(readNode(ext.value), TAG.BIT_STRING, "keyUsage");
  const bits = new Set<number>();
  const bytes = node.value.subarray(1);
  for (let byte = 0; byte < bytes.length; byte++) {
    for (let bit = 0; bit < 8; bit++) if (bytes[byte]! & (0x80 >> bit)) bits.add(byte * 8 + bit);
  }
  return bits;
}

export function readExtKeyUsage(ext: CertExtension): string[] {
  return children(readNode(ext.value)).map(readOid);
}

export interface GeneralName {
  type: "uri" | "dns" | "other";
  value: string;
}

export function readSubjectAltNames(ext: CertExtension): GeneralName[] {
  return children(readNode(ext.value)).map((n) => {
    if (n.tag === 0x86) return { type: "uri" as const, value: n.value.toString("ascii") };
    if (n.tag === 0x82) return { type: "dns" as const, value: n.value.toString("ascii") };
    return { type: "other" as const, value: n.value.toString("hex") };
  });
}

export function readKeyIdentifier(ext: CertExtension, kind: "subject" | "authority"): Buffer | undefined {
  const node = readNode(ext.value);
  if (kind === "subject") return expectTag(node, TAG.OCTET_STRING, "subjectKeyIdentifier").value;
  return children(node).find((c) => c.tag === 0x80)?.value;
}
