import { describe, expect, it } from "vitest";
import { parseProcStat, parseProcStatus, readBootId, readProcIds, readProcStat } from "./proc.js";

const fields = (startTime: string) =>
  [
    "S",
    "1",
    "100",
    "100",
    "0",
    "-1",
    "4194560",
    "10",
    "0",
    "0",
    "0",
    "5",
    "3",
    "0",
    "0",
    "20",
    "0",
    "1",
    "0",
    startTime,
    "1000",
    "50",
  ].join(" ");

describe("parseProcStat", () => {
  it("finds the start time after a command name with spaces and parentheses", () => {
    const s = parseProcStat(`4242 (evil) 1 2 (x)) ${fields("987654")}\n`);
    expect(s).toEqual({ startTime: "987654", ppid: 1 });
  });
  it("rejects text without a command name or truncated fields", () => {
    expect(() => parseProcStat("4242 evil S 1")).toThrow(expect.objectContaining({ code: "identity.attestation_failed" }));
    expect(() => parseProcStat("4242 (evil) S 1 100")).toThrow(expect.objectContaining({ code: "identity.attestation_failed" }));
    expect(() => parseProcStat(`4242 (evil) ${fields("12ab")}`)).toThrow(
      expect.objectContaining({ code: "identity.attestation_failed" }),
    );
  });
  it("reads this process", async () => {
    const s = await readProcStat(process.pid);
    expect(s.startTime).toMatch(/^\d+$/);
    expect(s.ppid).toBe(process.ppid);
  });
});

describe("parseProcStatus", () => {
  it("reads real/effective/saved/fs ids", () => {
    const ids = parseProcStatus("Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t5\t6\t7\t8\n");
    expect(ids).toEqual({ uids: [1000, 0, 0, 0], gids: [5, 6, 7, 8] });
  });
  it("rejects malformed lines", () => {
    expect(() => parseProcStatus("Uid:\t1\t2\nGid:\t1\t1\t1\t1\n")).toThrow(
      expect.objectContaining({ code: "identity.attestation_failed" }),
    );
    expect(() => parseProcStatus("Gid:\t1\t1\t1\t1\n")).toThrow(expect.objectContaining({ code: "identity.attestation_failed" }));
  });
  it("reads this process and the boot id", async () => {
    const ids = await readProcIds(process.pid);
    expect(ids.uids[1]).toBe(process.geteuid!());
    expect(readBootId()).toMatch(/^[0-9a-f-]{36}$/);
  });
  it("a missing process is a typed error", async () => {
    await expect(readProcStat(2 ** 22 + 17)).rejects.toMatchObject({ code: "identity.attestation_failed" });
  });
});
