import { Identity } from "./identity.js";

let shared: Identity | undefined;

/** One Identity per process from `SPIFFE_ENDPOINT_SOCKET`, created on first use (and again after close()). */
export function defaultIdentity(): Identity {
  if (!shared || shared.isClosed) shared = new Identity();
  return shared;
}
