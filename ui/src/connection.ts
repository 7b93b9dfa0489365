import { ApiError, Client, type StreamMessage, type Task } from "../../src/client/index.js";
import { t } from "./i18n/index.js";

const KEY_STORAGE = "multi-heygem.api-key";
/** Without the stream (a proxy that buffers it, an old gateway), views reload this often instead. */
const POLL_MS = 5000;

export type LiveState = "connecting" | "live" | "polling";
type Listener = (message: StreamMessage) => void;

/**
 * The dashboard's one link to the gateway it is served from: the typed client with the API key
 * kept in this browser, one shared event stream that every view listens to, and what the
 * client cannot do in a browser (an upload whose progress XMLHttpRequest reports).
 */
export class Connection {
  client: Client;
  key: string | undefined;
  live: LiveState = "connecting";
  private readonly listeners = new Set<Listener>();
  private stream: AbortController | undefined;
  private poll: ReturnType<typeof setInterval> | undefined;

  constructor(
    /** Called when the gateway answers 401: the UI asks for a key. */
    private readonly onUnauthorized: () => void,
    private readonly onLiveChange: (state: LiveState) => void,
  ) {
    this.key = localStorage.getItem(KEY_STORAGE) ?? undefined;
    this.client = this.makeClient();
  }

  setKey(key: string | undefined): void {
    this.key = key?.trim() || undefined;
    if (this.key) localStorage.setItem(KEY_STORAGE, this.key);
    else localStorage.removeItem(KEY_STORAGE);
    this.client = this.makeClient();
    this.start();
  }

  /** A sentence for an error, after asking for a key when the gateway wants one. */
  explain(err: unknown): string {
    if (err instanceof ApiError) {
      if (err.status === 401) this.onUnauthorized();
      if (err.status === 0) return t("error.unreachable");
      return err.message;
    }
    return err instanceof Error ? err.message : String(err);
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** (Re)opens the stream of every task this key may see. */
  start(): void {
    this.stream?.abort();
    if (this.poll) clearInterval(this.poll);
    this.poll = undefined;
    const controller = new AbortController();
    this.stream = controller;
    this.setLive("connecting");
    void this.follow(controller.signal);
  }

  stop(): void {
    this.stream?.abort();
    if (this.poll) clearInterval(this.poll);
  }

  private async follow(signal: AbortSignal): Promise<void> {
    try {
      for await (const message of this.client.follow({ signal })) {
        if (message.type === "ready" || message.type === "task" || message.type === "snapshot")
          this.setLive("live");
        for (const listener of this.listeners) listener(message);
      }
    } catch (err) {
      if (signal.aborted) return;
      this.explain(err);
      // No stream to be had: tell the views to reload now and then, as a "reset" would.
      this.setLive("polling");
      this.poll = setInterval(() => {
        for (const listener of this.listeners) listener({ type: "reset", id: 0 });
      }, POLL_MS);
    }
  }

  private setLive(state: LiveState): void {
    this.live = state;
    this.onLiveChange(state);
  }

  /**
   * `POST /tasks` with XMLHttpRequest: fetch cannot report how much of a request body has gone
   * out, and a browser's FormData is the cheapest way to stream a File.
   */
  upload(form: FormData, onProgress: (sent: number, total: number) => void): Promise<Task> {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/tasks");
      if (this.key) xhr.setRequestHeader("authorization", `Bearer ${this.key}`);
      xhr.upload.addEventListener("progress", (e) => onProgress(e.loaded, e.total));
      xhr.addEventListener("load", () => {
        let body: { error?: string; message?: string; field?: string } & Partial<Task> = {};
        try {
          body = JSON.parse(xhr.responseText) as typeof body;
        } catch {
          // Not JSON: the status says what there is to say.
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body as Task);
        else
          reject(
            new ApiError(
              xhr.status,
              body.error ?? `HTTP_${xhr.status}`,
              body.message ?? `${xhr.status} ${xhr.statusText}`,
              body.field,
            ),
          );
      });
      xhr.addEventListener("error", () => reject(new ApiError(0, "UNREACHABLE", t("error.unreachable"))));
      xhr.send(form);
    });
  }

  /**
   * Something a `<video>` can play. It cannot send an Authorization header, so with a key the MP4
   * is fetched with it and shown from memory; without one the video streams it (and can seek).
   */
  async resultSource(id: string, signal: AbortSignal): Promise<{ url: string; revoke: () => void }> {
    if (!this.key) return { url: `/tasks/${encodeURIComponent(id)}/result`, revoke: () => {} };
    const { body } = await this.client.result(id, signal);
    const blob = await new Response(body, { headers: { "content-type": "video/mp4" } }).blob();
    const url = URL.createObjectURL(blob);
    return { url, revoke: () => URL.revokeObjectURL(url) };
  }

  private makeClient(): Client {
    return new Client({ url: location.origin, ...(this.key ? { apiKey: this.key } : {}) });
  }
}
