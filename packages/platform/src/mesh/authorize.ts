import { describeWorkload } from "@hexr/core";

/** Decides whether a verified peer may talk to this workload; `reason` is shown in the 403. */
export type PeerAuthorizer = (peer: string, self: string) => { allowed: true } | { allowed: false; reason: string };

/** The default inbound rule: same trust domain (already proven by the chain) and same tenant. */
export const sameTenant: PeerAuthorizer = (peer, self) => {
  const p = describeWorkload(peer);
  const s = describeWorkload(self);
  if (p.trustDomain !== s.trustDomain) return { allowed: false, reason: `caller is in trust domain ${p.trustDomain}` };
  if (s.kind !== "agent") return { allowed: true };
  if (p.kind === "system") return { allowed: true };
  if (p.kind === "agent" && p.tenant === s.tenant) return { allowed: true };
  return { allowed: false, reason: `caller ${peer} is not in tenant ${s.tenant}` };
};
