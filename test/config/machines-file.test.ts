import { describe, expect, it } from "vitest";
import { parseMachines } from "../../src/config/machines-file.js";
import { ConfigError } from "../../src/errors.js";

const entry = { name: "gpu-1", host: "10.0.0.5", port: 8000 };

function problem(raw: unknown): ConfigError {
  try {
    parseMachines(raw, "machines.json");
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("accepted");
}

describe("machines.json is as strict as worker.json (issue 10)", () => {
  it("takes the seed's format, with defaults filled in", () => {
    const file = parseMachines({ machines: [entry, { ...entry, name: "gpu-2", port: 8001 }] }, "m.json");
    expect(file.machines[0]).toEqual({ ...entry, max_concurrent: 1, enabled: true });
  });

  it("refuses an unknown key, naming the field and what is allowed", () => {
    const err = problem({ machines: [{ ...entry, maxConcurrent: 2 }] });
    expect(err.fieldPath).toBe("machines[0].maxConcurrent");
    expect(err.problem).toMatch(/unknown setting \(allowed: name, host, port, max_concurrent, enabled\)/);
    expect(problem({ machines: [], workers: [] }).problem).toMatch(/unknown setting/);
  });

  it.each([
    ["http://10.0.0.5:8000", /is a URL; write the host alone \("10\.0\.0\.5"\)/],
    ["10.0.0.5:8000", /carries a port/],
    ["gpu box", /not a host name or an IP address/],
    ["gpu_1.lan", /not a host name or an IP address/],
  ])("refuses host %s", (host, message) => {
    const err = problem({ machines: [{ ...entry, host }] });
    expect(err.fieldPath).toBe("machines[0].host");
    expect(err.problem).toMatch(message);
  });

  it.each(["gpu-1.lan", "localhost", "192.168.1.101", "::1", "[fe80::1]", "gpu.example.com."])(
    "takes host %s",
    (host) => {
      expect(parseMachines({ machines: [{ ...entry, host }] }, "m.json").machines[0]?.host).toBe(host);
    },
  );

  it("refuses a duplicate name and a duplicate address", () => {
    expect(problem({ machines: [entry, { ...entry, port: 8001 }] }).problem).toMatch(
      /duplicate machine name/,
    );
    const twice = problem({ machines: [entry, { ...entry, name: "gpu-1b", host: "10.0.0.5" }] });
    expect(twice.fieldPath).toBe("machines[1].host");
    expect(twice.problem).toMatch(/10\.0\.0\.5:8000 is already listed as "gpu-1"/);
  });

  it("takes an empty list (the gateway warns about it)", () => {
    expect(parseMachines({ machines: [] }, "m.json").machines).toEqual([]);
  });
});
