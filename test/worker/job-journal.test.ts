import { describe, expect, it } from "vitest";
import { type JournalLine, peakConcurrency } from "../../src/worker/job-journal.js";

const line = (job_id: string, event: JournalLine["event"]): JournalLine => ({ at: "", job_id, event });

describe("peakConcurrency", () => {
  it("counts jobs live at once from accepted or started until finished or deleted", () => {
    const lines = [
      line("a", "accepted"),
      line("b", "accepted"),
      line("a", "started"),
      line("a", "finished"),
      line("b", "started"),
      line("c", "accepted"),
      line("c", "started"),
      line("b", "deleted"),
      line("c", "finished"),
    ];
    expect(peakConcurrency(lines, "accepted")).toBe(2);
    expect(peakConcurrency(lines, "started")).toBe(2);
    expect(peakConcurrency(lines.slice(0, 4), "started")).toBe(1);
  });
});
