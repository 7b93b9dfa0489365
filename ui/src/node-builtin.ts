/**
 * What `node:*` imports become in the browser build: the typed client loads them only in its
 * Node-only calls (saving a result to a path, uploading from a path), which the dashboard never makes.
 */
throw new Error("a Node-only part of the client was called in the browser");
