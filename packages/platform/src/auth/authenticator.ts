import type { IncomingMessage } from "node:http";
import type { Principal } from "./principal.js";

/**
 * Turns a request's credentials into a principal. Returns `null` when the credential is not of
 * its kind (so the next authenticator may try), and throws `auth.unauthenticated` when it is of
 * its kind but invalid.
 */
export interface Authenticator {
  readonly name: string;
  authenticate(req: IncomingMessage, bearer: string | undefined): Promise<Principal | null>;
}

export function bearerToken(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : undefined;
}
