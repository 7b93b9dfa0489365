/**
 * A callback_url as every API response and log line shows it (issue 9): credentials and query
 * string are often where a receiver keeps its token (`https://user:token@…`, `?key=…`), so they
 * become `***`; the scheme, host, port and path stay to tell which receiver it is. The store keeps
 * the real URL for delivery.
 */
export function maskUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "***";
  }
  const credentials = url.username !== "" || url.password !== "" ? "***@" : "";
  const query = url.search !== "" ? "?***" : "";
  const fragment = url.hash !== "" ? "#***" : "";
  return `${url.protocol}//${credentials}${url.host}${url.pathname}${query}${fragment}`;
}
