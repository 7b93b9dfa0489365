import { request } from "undici";
import { HttpError, type StreamedBody } from "../http.js";

/** POSTs a streamed multipart form; the JSON answer, or an HttpError naming `what`. */
export async function postForm(
  url: string,
  form: StreamedBody,
  what: string,
): Promise<Record<string, unknown>> {
  const res = await request(url, {
    method: "POST",
    body: form.body,
    headers: { "content-type": form.contentType, "content-length": String(form.length) },
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new HttpError(res.statusCode, text, what);
  return JSON.parse(text) as Record<string, unknown>;
}
