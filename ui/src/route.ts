import { useEffect, useState } from "preact/hooks";

export type Route =
  | { view: "queue" }
  | { view: "task"; id: string }
  | { view: "machines" }
  | { view: "submit" };

/** Views live in the URL's hash, so the gateway serves one index.html and links can be shared. */
export function parseRoute(hash: string): Route {
  const [view, id] = hash.replace(/^#\/?/, "").split("/");
  if (view === "task" && id) return { view: "task", id: decodeURIComponent(id) };
  if (view === "machines") return { view: "machines" };
  if (view === "submit") return { view: "submit" };
  return { view: "queue" };
}

export function href(route: Route): string {
  return route.view === "task" ? `#/task/${encodeURIComponent(route.id)}` : `#/${route.view}`;
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
