import { describe, expect, it } from "vitest";
import { ERROR_CODES, failureKindOf, httpStatus, isErrorCode } from "../src/error-codes.js";
import { AppError, InputError } from "../src/errors.js";
import { isWorkerError, WorkerHttpError } from "../src/protocol/worker-client.js";

describe("the error catalogue", () => {
  it("declares each code once, under its own name, with an HTTP error status", () => {
    for (const [key, spec] of Object.entries(ERROR_CODES)) {
      expect(spec.code).toBe(key);
      const statuses = typeof spec.status === "number" ? [spec.status] : Object.values(spec.status);
      for (const status of statuses) expect(status, key).toBeGreaterThanOrEqual(400);
    }
  });

  it("gives typed errors their status", () => {
    expect(new AppError("SHUTTING_DOWN", "stopping").statusCode).toBe(503);
    expect(new InputError("NOT_MULTIPART", "send a form").statusCode).toBe(415);
    expect(new InputError("BLOB_MISSING", "upload it first", "video").statusCode).toBe(409);
  });

  it("refuses a status that disagrees with the catalogue", () => {
    expect(new InputError("NOT_MULTIPART", "send a form", undefined, 415).statusCode).toBe(415);
    expect(() => new InputError("NOT_MULTIPART", "send a form", undefined, 400)).toThrow(/415/);
  });

  it("answers a sync task's failure by whose fault it was", () => {
    expect(httpStatus("TASK_FAILED", "input")).toBe(422);
    expect(httpStatus("TASK_FAILED", "machine")).toBe(502);
  });

  it("reads codes from the wire: known ones with their kind, unknown ones as nobody's", () => {
    expect(isErrorCode("BLOB_MISSING")).toBe(true);
    expect(isErrorCode("WARP_CORE_BREACH")).toBe(false);
    expect(isErrorCode("toString")).toBe(false);
    expect(failureKindOf("MEDIA_UNREADABLE")).toBe("input");
    expect(failureKindOf("SHUTTING_DOWN")).toBe("machine");
    expect(failureKindOf("BLOB_MISSING")).toBeUndefined();
    expect(failureKindOf("WARP_CORE_BREACH")).toBeUndefined();
  });

  it("the gateway knows a worker's refusal by its catalogue entry, and whose fault it is", () => {
    const missing = new WorkerHttpError(409, "BLOB_MISSING", "upload the video first", "video");
    expect(isWorkerError(missing, ERROR_CODES.BLOB_MISSING)).toBe(true);
    expect(isWorkerError(missing, ERROR_CODES.JOB_CONFLICT)).toBe(false);
    expect(isWorkerError(new Error("BLOB_MISSING"), ERROR_CODES.BLOB_MISSING)).toBe(false);
    expect(missing.kind).toBe("machine");
    expect(new WorkerHttpError(400, "MEDIA_UNREADABLE", "not media").kind).toBe("input");
    expect(new WorkerHttpError(502, "HTTP_502", "<html>bad gateway</html>").kind).toBe("machine");
  });
});
