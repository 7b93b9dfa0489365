import { describe, expect, it } from "vitest";
import { isLoopbackAddress, isLoopbackHost } from "../../src/http/loopback.js";

describe("loopback", () => {
  it.each(["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])("%s is a loopback peer", (address) => {
    expect(isLoopbackAddress(address)).toBe(true);
  });

  it.each([
    "10.1.2.3",
    "192.168.1.5",
    "0.0.0.0",
    "::",
    "::ffff:10.0.0.1",
    "128.0.0.1",
    "fe80::1",
    "",
    undefined,
  ])("%s is not", (address) => {
    expect(isLoopbackAddress(address)).toBe(false);
  });

  it("a worker on localhost, 127.0.0.1 or [::1] stays on this machine; 0.0.0.0, :: and names do not", () => {
    for (const host of ["localhost", "LOCALHOST", "127.0.0.1", "::1", "[::1]"])
      expect(isLoopbackHost(host), host).toBe(true);
    for (const host of ["0.0.0.0", "::", "192.168.1.50", "gpu-01.lan", "localhost.evil.example"])
      expect(isLoopbackHost(host), host).toBe(false);
  });
});
