import { HexrError } from "@hexr/core";
import { isIP } from "node:net";

/** Where the Workload API is served (SPIFFE Workload Endpoint spec, section 4). */
export type WorkloadEndpoint = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

export const ENDPOINT_ENV = "SPIFFE_ENDPOINT_SOCKET";

function bad(addr: string, why: string): HexrError {
  return new HexrError(
    "identity.invalid_endpoint",
    `invalid Workload API address ${JSON.stringify(addr.slice(0, 200))}: ${why}`,
    {
      kind: "invalid_argument",
    },
  );
}

/** Parses `unix:///abs/path` (or `unix:/abs/path`) and `tcp://<IP>:<port>`; anything else is refused. */
export function parseEndpoint(addr: string): WorkloadEndpoint {
  let u: URL;
  try {
    u = new URL(addr);
  } catch {
    throw bad(addr, "not a URI; expected unix:///path/to/socket or tcp://IP:port");
  }
  if (u.search || u.hash) throw bad(addr, "query and fragment are not allowed");
  if (u.username || u.password) throw bad(addr, "user info is not allowed");
  if (u.protocol === "unix:") {
    if (u.host) throw bad(addr, "a unix address has no authority (use unix:///absolute/path)");
    const path = decodeURIComponent(u.pathname);
    if (!path.startsWith("/") || path === "/") throw bad(addr, "the socket path must be absolute");
    return { kind: "unix", path };
  }
  if (u.protocol === "tcp:") {
    const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
    if (!isIP(host)) throw bad(addr, "the host must be an IP address");
    if (!u.port) throw bad(addr, "the port is required");
    if (u.pathname && u.pathname !== "") throw bad(addr, "a tcp address has no path");
    return { kind: "tcp", host, port: Number(u.port) };
  }
  throw bad(addr, "the scheme must be unix or tcp");
}

/** The endpoint from an explicit address or `SPIFFE_ENDPOINT_SOCKET`. */
export function resolveEndpoint(addr: string | undefined, env: NodeJS.ProcessEnv = process.env): WorkloadEndpoint {
  const value = addr ?? env[ENDPOINT_ENV];
  if (!value) {
    throw new HexrError(
      "identity.no_endpoint",
      `${ENDPOINT_ENV} is not set: run the process under 'hexr run' (or a SPIRE agent) or pass the Workload API address`,
      { kind: "failed_precondition" },
    );
  }
  return parseEndpoint(value);
}
