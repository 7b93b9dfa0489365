import type { FastifyInstance, FastifyRequest } from "fastify";
import { ForbiddenError, NotFoundError, UnauthorizedError } from "../../errors.js";
import { isLoopbackAddress, isLoopbackHost } from "../../http/loopback.js";
import type { AvatarStore } from "../../store/avatar-store.js";
import type { AvatarRow, TaskRow, VoiceRow } from "../../store/schema.js";
import type { TaskStore } from "../../store/task-store.js";
import type { VoiceStore } from "../../store/voice-store.js";
import type { ApiKey, ApiKeySet } from "./api-keys.js";

/**
 * Who may call which route (issue 9, "API keys"). Each route names the least it needs in its
 * config, `access`; a route that names nothing needs `admin`, so a route added without thought
 * is closed rather than open. The same value feeds the OpenAPI document (`describeAccess`).
 *
 * - `public`: anyone (`/`, `/docs`, `/openapi.json`).
 * - `submit`: a submit or admin key; a submit key sees only the tasks it created.
 * - `admin`: an admin key.
 *
 * Without a keys file the API is open so that the seed's clients work unchanged, except that
 * `admin` routes answer only to loopback clients: draining the fleet takes a shell on the box.
 */
export type Access = "public" | "submit" | "admin";

declare module "fastify" {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    /** The key the request came with; null in open mode and on public routes. */
    apiKey: ApiKey | null;
  }
}

/** Highest `priority` a submit key may give its tasks; above it takes an admin key. */
export const SUBMIT_MAX_PRIORITY = 10;

const REALM = 'Bearer realm="multi-heygem"';

export function installAccessControl(
  app: FastifyInstance,
  options: {
    /** The keys in force now (they are re-read when the file changes); undefined in open mode. */
    keys: () => ApiKeySet | undefined;
  },
): void {
  app.decorateRequest("apiKey", null);
  app.addHook("onRequest", async (request, reply) => {
    if (request.is404) return;
    const access = request.routeOptions.config.access ?? "admin";
    if (access === "public") return;
    const keys = options.keys();
    if (keys === undefined) {
      if (access !== "admin") return;
      // Not request.ip: no proxy header may make a remote client look local.
      if (!isLoopbackAddress(request.socket.remoteAddress)) {
        throw new ForbiddenError(
          "ADMIN_LOOPBACK_ONLY",
          "without API keys, machine administration answers only on the gateway's own machine; " +
            "configure --api-keys and use an admin key",
        );
      }
      // A web page whose name is rebound to 127.0.0.1 reaches us from a browser on this machine,
      // as its own origin; only its Host header still names it (DNS rebinding).
      if (!isLoopbackHost(hostName(request.headers.host))) {
        throw new ForbiddenError(
          "ADMIN_LOOPBACK_ONLY",
          "without API keys, machine administration answers only to requests addressed to localhost, " +
            "127.0.0.1 or [::1]; configure --api-keys and use an admin key",
        );
      }
      return;
    }
    const presented = bearerToken(request.headers.authorization);
    if (presented === undefined) {
      void reply.header("www-authenticate", REALM);
      throw new UnauthorizedError(
        "UNAUTHORIZED",
        "this gateway needs an API key: send Authorization: Bearer <key>",
      );
    }
    const key = keys.find(presented);
    if (key === undefined) {
      void reply.header("www-authenticate", `${REALM}, error="invalid_token"`);
      throw new UnauthorizedError("INVALID_API_KEY", "the API key is not known here (mistyped, or removed)");
    }
    if (access === "admin" && key.role !== "admin") {
      throw new ForbiddenError(
        "FORBIDDEN",
        `the key "${key.name}" has the role ${key.role}; this needs an admin key`,
      );
    }
    request.apiKey = key;
  });
}

/** `127.0.0.1` of `127.0.0.1:8101`, `[::1]` of `[::1]:8101`; "" when there is none. */
function hostName(host: string | undefined): string {
  if (host === undefined) return "";
  try {
    return new URL(`http://${host}`).hostname;
  } catch {
    return "";
  }
}

/** The key in `Authorization: Bearer <key>`, or undefined when there is none. */
function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer +(\S+) *$/i.exec(header ?? "");
  return match?.[1];
}

/**
 * Whose tasks the request may see: a submit key only its own (anything else answers 404, so
 * task ids do not leak); undefined means every task (an admin key, or open mode).
 */
export function ownerScope(request: FastifyRequest): string | undefined {
  return request.apiKey?.role === "submit" ? request.apiKey.name : undefined;
}

/** The task, if the request may see it: another key's task is as unknown as one that never was. */
export async function visibleTask(store: TaskStore, request: FastifyRequest, id: string): Promise<TaskRow> {
  const task = await store.getTask(id);
  const owner = ownerScope(request);
  if (!task || (owner !== undefined && task.owner !== owner)) throw new NotFoundError(`no task ${id}`);
  return task;
}

/** The avatar, if the request may see it: like tasks, a submit key sees only its own. */
export async function visibleAvatar(
  store: AvatarStore,
  request: FastifyRequest,
  id: string,
): Promise<AvatarRow> {
  const avatar = await store.get(id);
  const owner = ownerScope(request);
  if (!avatar || (owner !== undefined && avatar.owner !== owner)) throw new NotFoundError(`no avatar ${id}`);
  return avatar;
}

/** The voice, if the request may see it: like tasks, a submit key sees only its own. */
export async function visibleVoice(
  store: VoiceStore,
  request: FastifyRequest,
  id: string,
): Promise<VoiceRow> {
  const voice = await store.get(id);
  const owner = ownerScope(request);
  if (!voice || (owner !== undefined && voice.owner !== owner)) throw new NotFoundError(`no voice ${id}`);
  return voice;
}

/** The owner a new task (or avatar) records: the key's name, or null in open mode. */
export function taskOwner(request: FastifyRequest): string | null {
  return request.apiKey?.name ?? null;
}

/** A submit key may not push its tasks ahead of everyone's (issue 9, "Bounded work"). */
export function checkPriority(request: FastifyRequest, priority: number): void {
  if (request.apiKey?.role === "submit" && priority > SUBMIT_MAX_PRIORITY) {
    throw new ForbiddenError(
      "PRIORITY_NOT_ALLOWED",
      `a submit key may set priority up to ${SUBMIT_MAX_PRIORITY}; ${priority} needs an admin key`,
      "priority",
    );
  }
}

/** The OpenAPI side of a route's `access`: its security requirement, its 401/403, a sentence. */
export function describeAccess(
  schema: Record<string, unknown>,
  access: Access | undefined,
): Record<string, unknown> {
  const level = access ?? "admin";
  if (level === "public") return { ...schema, security: [] };
  const error = { $ref: "ErrorBody#" };
  const who =
    level === "admin"
      ? "Needs an admin key. Without --api-keys: loopback clients only."
      : "Needs a submit or admin key; a submit key sees only its own tasks. Without --api-keys: open.";
  const description = typeof schema.description === "string" ? `${schema.description}\n\n${who}` : who;
  const responses = (schema.response ?? {}) as Record<string, unknown>;
  return {
    ...schema,
    description,
    security: [{ apiKey: [] }],
    response: {
      ...responses,
      401: { ...error, description: "No API key, or one that is not known" },
      403: { ...error, description: "The key's role does not allow this" },
    },
  };
}
