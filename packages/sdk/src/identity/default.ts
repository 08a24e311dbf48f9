import { Identity } from "./identity.js";

let shared: Identity | undefined;

/** One Identity per process from `SPIFFE_ENDPOINT_SOCKET`, created on first use. */
export function defaultIdentity(): Identity {
  shared ??= new Identity();
  return shared;
}
