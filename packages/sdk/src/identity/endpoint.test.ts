import { describe, expect, it } from "vitest";
import { parseEndpoint, resolveEndpoint } from "./endpoint.js";

describe("SPIFFE_ENDPOINT_SOCKET", () => {
  it("accepts unix and tcp addresses as the Workload Endpoint spec writes them", () => {
    expect(parseEndpoint("unix:///run/spire/agent.sock")).toEqual({ kind: "unix", path: "/run/spire/agent.sock" });
    expect(parseEndpoint("unix:/tmp/a%20b.sock")).toEqual({ kind: "unix", path: "/tmp/a b.sock" });
    expect(parseEndpoint("tcp://127.0.0.1:8000")).toEqual({ kind: "tcp", host: "127.0.0.1", port: 8000 });
    expect(parseEndpoint("tcp://[::1]:8000")).toEqual({ kind: "tcp", host: "::1", port: 8000 });
  });

  it.each([
    ["relative path", "unix:run/agent.sock"],
    ["authority on unix", "unix://host/run/agent.sock"],
    ["query", "unix:///run/agent.sock?x=1"],
    ["fragment", "unix:///run/agent.sock#x"],
    ["tcp with a host name", "tcp://localhost:8000"],
    ["tcp without a port", "tcp://127.0.0.1"],
    ["tcp with a path", "tcp://127.0.0.1:8000/foo"],
    ["tcp with user info", "tcp://u@127.0.0.1:8000"],
    ["another scheme", "http://127.0.0.1:8000"],
    ["no scheme", "/run/agent.sock"],
    ["root only", "unix:///"],
  ])("refuses %s", (_why, addr) => {
    expect(() => parseEndpoint(addr)).toThrow(expect.objectContaining({ code: "identity.invalid_endpoint" }));
  });

  it("falls back to the environment, and says what to do when it is unset", () => {
    expect(resolveEndpoint(undefined, { SPIFFE_ENDPOINT_SOCKET: "unix:///x.sock" })).toEqual({ kind: "unix", path: "/x.sock" });
    expect(resolveEndpoint("unix:///y.sock", { SPIFFE_ENDPOINT_SOCKET: "unix:///x.sock" })).toEqual({
      kind: "unix",
      path: "/y.sock",
    });
    expect(() => resolveEndpoint(undefined, {})).toThrow(expect.objectContaining({ code: "identity.no_endpoint" }));
  });
});
