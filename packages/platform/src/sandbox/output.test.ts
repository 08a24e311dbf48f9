import { describe, expect, it } from "vitest";
import { CappedOutput, markerFor, utf8Boundary } from "./output.js";

describe("CappedOutput", () => {
  it("keeps everything under the cap, without a marker", () => {
    const o = new CappedOutput("stdout", 10);
    o.push(Buffer.from("hello"));
    o.push(Buffer.from("world"));
    expect(o.text()).toBe("helloworld");
    expect(o.truncated).toBe(false);
  });

  it("cuts at the cap and says how many bytes were dropped", () => {
    const o = new CappedOutput("stderr", 8);
    o.push(Buffer.from("0123456"));
    o.push(Buffer.from("789abc"));
    o.push(Buffer.from("def"));
    expect(o.truncated).toBe(true);
    expect(o.droppedBytes).toBe(8);
    expect(o.text()).toBe("01234567" + markerFor("stderr", 8, 8));
    expect(o.text()).toContain("[hexr: stderr truncated at 8 bytes, 8 more bytes dropped]");
  });

  it("never ends in the middle of a UTF-8 character", () => {
    const o = new CappedOutput("stdout", 5);
    o.push(Buffer.from("abcé€")); // a b c (1 each) é (2) € (3)
    expect(o.text().startsWith("abcé")).toBe(true);
    expect(o.text()).not.toContain("\uFFFD");
    const p = new CappedOutput("stdout", 4);
    p.push(Buffer.from("abcé"));
    expect(p.text().startsWith("abc\n[hexr")).toBe(true);
  });
});

describe("utf8Boundary", () => {
  it.each([
    ["ascii", Buffer.from("abc"), 3],
    ["complete 2-byte", Buffer.from("é"), 2],
    ["half a 2-byte", Buffer.from("é").subarray(0, 1), 0],
    ["two thirds of a 3-byte", Buffer.concat([Buffer.from("a"), Buffer.from("€").subarray(0, 2)]), 1],
    ["complete 4-byte", Buffer.from("😀"), 4],
    ["three quarters of a 4-byte", Buffer.from("😀").subarray(0, 3), 0],
    ["empty", Buffer.alloc(0), 0],
  ])("%s", (_l, buf, n) => {
    expect(utf8Boundary(buf)).toBe(n);
  });
});
