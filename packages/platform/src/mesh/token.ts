import { randomBytes, timingSafeEqual } from "node:crypto";

export function newMeshToken(): string {
  return randomBytes(32).toString("base64url");
}

/** Constant-time comparison of a presented mesh token with the expected one. */
export function meshTokenMatches(presented: string | string[] | undefined, expected: string): boolean {
  if (typeof presented !== "string") return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
