/**
 * A refusal or failure the gateway answered with its JSON error body (`{error, message, field?}`),
 * or a transport failure (`status` 0) when no answer came.
 */
export class ApiError extends Error {
  override readonly name = "ApiError";

  constructor(
    /** The HTTP status; 0 when the gateway could not be reached. */
    readonly status: number,
    /** The stable code of src/error-codes.ts (`QUEUE_FULL`, `TASK_NOT_COMPLETED`…). */
    readonly code: string,
    message: string,
    readonly field?: string,
    /** The task the answer is about, when it names one (a failed sync wait, say). */
    readonly taskId?: string,
  ) {
    super(message);
  }

  /** The error of a non-2xx answer; its body is read here. */
  static async from(res: Response): Promise<ApiError> {
    const text = await res.text().catch(() => "");
    let body: { error?: unknown; message?: unknown; field?: unknown; task_id?: unknown } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // Not ours (a proxy's HTML page, say): the status is all there is.
    }
    const code = typeof body.error === "string" ? body.error : `HTTP_${res.status}`;
    const message =
      typeof body.message === "string" ? body.message : `${res.status} ${res.statusText || "error"}`.trim();
    const taskId =
      typeof body.task_id === "string" ? body.task_id : (res.headers.get("x-task-id") ?? undefined);
    return new ApiError(
      res.status,
      code,
      message,
      typeof body.field === "string" ? body.field : undefined,
      taskId,
    );
  }
}
