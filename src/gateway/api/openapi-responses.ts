/**
 * What each status code of the API means, for the responses a route declares without a sentence
 * of its own: the OpenAPI document then has no "Default Response" left for a code generator or a
 * reader to puzzle over (issue 11).
 */
const MEANING: Readonly<Record<string, string>> = {
  "200": "Success",
  "201": "Created",
  "202": "Accepted: it happens in the background",
  "204": "Done; no content",
  "206": "The requested byte range",
  "400": "Bad input: `error` says what is wrong and `field`, when there is one, where",
  "404": "Not found: the id or name is unknown (another key's task is unknown too)",
  "408": "The upload stalled, or took longer than --upload-timeout",
  "409": "The task's state does not allow this now",
  "410": "Gone: deleted under the gateway's retention",
  "413": "A file is larger than --max-upload",
  "415": "The body is not of a type this route takes",
  "416": "The Range is outside the file",
  "422": "The task failed through its input's fault",
  "429": "Too many tasks wait (--max-pending); try again after Retry-After",
  "502": "No machine could do the task",
  "503": "The gateway cannot take this now (shutting down, or its store is unavailable); see Retry-After",
  "504": "--sync-timeout passed; the task goes on (follow it by its task_id)",
  "507": "Not enough free disk on the gateway (--min-free-disk)",
};

/** Success responses a route produces in its own media type (an MP4, an event stream). */
const isError = (code: string) => /^[45]/.test(code);

/**
 * The route's `response` with a description on every code and, for routes whose success is not
 * JSON (`produces`), error bodies declared as what they are: JSON.
 */
export function describeResponses(schema: Record<string, unknown>): Record<string, unknown> {
  const responses = schema.response as Record<string, Record<string, unknown>> | undefined;
  if (!responses) return schema;
  const produces = Array.isArray(schema.produces) ? (schema.produces as string[]) : undefined;
  const out: Record<string, unknown> = {};
  for (const [code, response] of Object.entries(responses)) {
    const description =
      typeof response.description === "string" ? response.description : (MEANING[code] ?? "Success");
    if (!produces || response.type === "null" || response.content !== undefined) {
      out[code] = { ...response, description };
      continue;
    }
    const { description: _, ...body } = response;
    const own = produces.filter((type) => type !== "application/json");
    const types = isError(code) ? ["application/json"] : own.length > 0 ? own : produces;
    out[code] = {
      description,
      content: Object.fromEntries(types.map((type) => [type, { schema: body }])),
    };
  }
  const { produces: _produces, ...rest } = schema;
  return { ...rest, response: out };
}
