import { InputError } from "../../errors.js";

/**
 * Refuses a query number that is not finite: Ajv coerces "1e400" to Infinity and then skips
 * minimum and maximum for it (issue 9), so every paged list checks its numbers here.
 */
export function assertFiniteQuery(values: Record<string, number | undefined>): void {
  for (const [field, value] of Object.entries(values)) {
    if (value !== undefined && !Number.isFinite(value))
      throw new InputError("INVALID_REQUEST", `querystring/${field} must be a finite integer`, field);
  }
}
