/**
 * The few protobuf messages of the SPIFFE Workload API, encoded and decoded by hand so the SDK needs
 * no protobuf runtime. Field numbers follow spiffe/spiffe standards/workloadapi.proto; unknown fields
 * are skipped, as proto3 requires.
 */

export class WireError extends Error {
  constructor(message: string) {
    super(`malformed Workload API message: ${message}`);
    this.name = "WireError";
  }
}

const enum WireType {
  Varint = 0,
  Fixed64 = 1,
  LengthDelimited = 2,
  Fixed32 = 5,
}

// ---- encoding (requests only carry strings) ----

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

function stringField(field: number, value: string): Buffer {
  const bytes = Buffer.from(value, "utf8");
  return Buffer.concat([Buffer.from([...varint((field << 3) | WireType.LengthDelimited), ...varint(bytes.length)]), bytes]);
}

export function encodeJwtSvidRequest(audience: readonly string[], spiffeId?: string): Buffer {
  return Buffer.concat([...audience.map((a) => stringField(1, a)), ...(spiffeId ? [stringField(2, spiffeId)] : [])]);
}

export function encodeValidateJwtSvidRequest(audience: string, svid: string): Buffer {
  return Buffer.concat([stringField(1, audience), stringField(2, svid)]);
}

/** X509SVIDRequest, X509BundlesRequest and JWTBundlesRequest have no fields. */
export const EMPTY_REQUEST = Buffer.alloc(0);

// ---- decoding ----

class Reader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): number {
    let result = 0;
    let mult = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new WireError("truncated varint");
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * mult;
      if ((b & 0x80) === 0) {
        if (result > Number.MAX_SAFE_INTEGER) throw new WireError("varint too large");
        return result;
      }
      mult *= 128;
    }
    throw new WireError("varint too long");
  }

  tag(): { field: number; type: number } {
    const t = this.varint();
    const field = Math.floor(t / 8);
    if (field === 0) throw new WireError("field number 0");
    return { field, type: t & 7 };
  }

  bytes(): Buffer {
    const len = this.varint();
    if (this.pos + len > this.buf.length) throw new WireError("truncated field");
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  double(): number {
    if (this.pos + 8 > this.buf.length) throw new WireError("truncated double");
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  skip(type: number): void {
    switch (type) {
      case WireType.Varint:
        this.varint();
        return;
      case WireType.Fixed64:
        this.need(8);
        return;
      case WireType.LengthDelimited:
        this.bytes();
        return;
      case WireType.Fixed32:
        this.need(4);
        return;
      default:
        throw new WireError(`unsupported wire type ${type}`);
    }
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new WireError("truncated field");
    this.pos += n;
  }
}

/** Iterates the fields of a message, checking the wire type of the ones we know. */
function fields(buf: Buffer, known: Record<number, number>, visit: (field: number, r: Reader) => void): void {
  const r = new Reader(buf);
  while (!r.done) {
    const { field, type } = r.tag();
    const want = known[field];
    if (want === undefined) {
      r.skip(type);
      continue;
    }
    if (type !== want) throw new WireError(`field ${field} has wire type ${type}, expected ${want}`);
    visit(field, r);
  }
}

const LD = WireType.LengthDelimited;

function mapEntry(buf: Buffer): [string, Buffer] {
  let key = "";
  let value = Buffer.alloc(0);
  fields(buf, { 1: LD, 2: LD }, (f, r) => {
    if (f === 1) key = r.bytes().toString("utf8");
    else value = Buffer.from(r.bytes());
  });
  return [key, value];
}

export interface X509SvidMessage {
  spiffeId: string;
  x509Svid: Buffer;
  x509SvidKey: Buffer;
  bundle: Buffer;
  hint: string;
}

export interface X509SvidResponse {
  svids: X509SvidMessage[];
  crl: Buffer[];
  federatedBundles: Map<string, Buffer>;
}

export function decodeX509SvidResponse(buf: Buffer): X509SvidResponse {
  const out: X509SvidResponse = { svids: [], crl: [], federatedBundles: new Map() };
  fields(buf, { 1: LD, 2: LD, 3: LD }, (f, r) => {
    if (f === 1) out.svids.push(decodeX509Svid(r.bytes()));
    else if (f === 2) out.crl.push(Buffer.from(r.bytes()));
    else {
      const [k, v] = mapEntry(r.bytes());
      out.federatedBundles.set(k, v);
    }
  });
  return out;
}

function decodeX509Svid(buf: Buffer): X509SvidMessage {
  const m: X509SvidMessage = {
    spiffeId: "",
    x509Svid: Buffer.alloc(0),
    x509SvidKey: Buffer.alloc(0),
    bundle: Buffer.alloc(0),
    hint: "",
  };
  fields(buf, { 1: LD, 2: LD, 3: LD, 4: LD, 5: LD }, (f, r) => {
    const b = r.bytes();
    if (f === 1) m.spiffeId = b.toString("utf8");
    else if (f === 2) m.x509Svid = Buffer.from(b);
    else if (f === 3) m.x509SvidKey = Buffer.from(b);
    else if (f === 4) m.bundle = Buffer.from(b);
    else m.hint = b.toString("utf8");
  });
  return m;
}

export interface BundlesResponse {
  crl: Buffer[];
  bundles: Map<string, Buffer>;
}

/** X509BundlesResponse {crl = 1, bundles = 2}. */
export function decodeX509BundlesResponse(buf: Buffer): BundlesResponse {
  const out: BundlesResponse = { crl: [], bundles: new Map() };
  fields(buf, { 1: LD, 2: LD }, (f, r) => {
    if (f === 1) out.crl.push(Buffer.from(r.bytes()));
    else {
      const [k, v] = mapEntry(r.bytes());
      out.bundles.set(k, v);
    }
  });
  return out;
}

/** JWTBundlesResponse {bundles = 1}. */
export function decodeJwtBundlesResponse(buf: Buffer): BundlesResponse {
  const out: BundlesResponse = { crl: [], bundles: new Map() };
  fields(buf, { 1: LD }, (_f, r) => {
    const [k, v] = mapEntry(r.bytes());
    out.bundles.set(k, v);
  });
  return out;
}

export interface JwtSvidMessage {
  spiffeId: string;
  svid: string;
  hint: string;
}

export function decodeJwtSvidResponse(buf: Buffer): JwtSvidMessage[] {
  const out: JwtSvidMessage[] = [];
  fields(buf, { 1: LD }, (_f, r) => {
    const m: JwtSvidMessage = { spiffeId: "", svid: "", hint: "" };
    fields(r.bytes(), { 1: LD, 2: LD, 3: LD }, (f, rr) => {
      const s = rr.bytes().toString("utf8");
      if (f === 1) m.spiffeId = s;
      else if (f === 2) m.svid = s;
      else m.hint = s;
    });
    out.push(m);
  });
  return out;
}

export interface ValidateJwtSvidResponse {
  spiffeId: string;
  claims: Record<string, unknown>;
}

export function decodeValidateJwtSvidResponse(buf: Buffer): ValidateJwtSvidResponse {
  const out: ValidateJwtSvidResponse = { spiffeId: "", claims: {} };
  fields(buf, { 1: LD, 2: LD }, (f, r) => {
    if (f === 1) out.spiffeId = r.bytes().toString("utf8");
    else out.claims = decodeStruct(r.bytes(), 0);
  });
  return out;
}

const MAX_DEPTH = 64;

/** google.protobuf.Struct {map<string, Value> fields = 1} → a plain object. */
function decodeStruct(buf: Buffer, depth: number): Record<string, unknown> {
  if (depth > MAX_DEPTH) throw new WireError("Struct nested too deeply");
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  fields(buf, { 1: LD }, (_f, r) => {
    let key = "";
    let value: unknown = null;
    fields(r.bytes(), { 1: LD, 2: LD }, (f, rr) => {
      if (f === 1) key = rr.bytes().toString("utf8");
      else value = decodeValue(rr.bytes(), depth + 1);
    });
    out[key] = value;
  });
  return { ...out };
}

/** google.protobuf.Value: null_value=1 (enum), number_value=2, string_value=3, bool_value=4, struct_value=5, list_value=6. */
function decodeValue(buf: Buffer, depth: number): unknown {
  if (depth > MAX_DEPTH) throw new WireError("Value nested too deeply");
  let value: unknown = null;
  fields(buf, { 1: WireType.Varint, 2: WireType.Fixed64, 3: LD, 4: WireType.Varint, 5: LD, 6: LD }, (f, r) => {
    switch (f) {
      case 1:
        r.varint();
        value = null;
        break;
      case 2:
        value = r.double();
        break;
      case 3:
        value = r.bytes().toString("utf8");
        break;
      case 4:
        value = r.varint() !== 0;
        break;
      case 5:
        value = decodeStruct(r.bytes(), depth + 1);
        break;
      case 6: {
        const list: unknown[] = [];
        fields(r.bytes(), { 1: LD }, (_g, lr) => list.push(decodeValue(lr.bytes(), depth + 1)));
        value = list;
        break;
      }
    }
  });
  return value;
}
