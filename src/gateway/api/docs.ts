import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance } from "fastify";
import { ErrorBody } from "../../protocol/schemas.js";
import { describeAccess } from "../auth/access-control.js";
import { OPENAPI_EXAMPLES } from "./openapi-examples.js";
import { describeResponses } from "./openapi-responses.js";
import {
  AvatarList,
  AvatarView,
  AvatarWarming,
  BulkCancelResult,
  CallbackDeliveryView,
  CallbackPayload,
  CallbackTryView,
  MachineList,
  MachineView,
  SyncFailure,
  SyncUnavailable,
  TaskCallbacks,
  TaskEvent,
  TaskEvents,
  TaskList,
  TaskView,
  VoiceList,
  VoiceView,
} from "./schemas.js";

declare module "fastify" {
  interface FastifySchema {
    /** OpenAPI 3 callbacks of the operation; @fastify/swagger reads them, its types omit them. */
    callbacks?: Record<string, unknown>;
  }
  interface FastifyContextConfig {
    /** The multipart form of a route, shown in the OpenAPI document (the handler streams it itself). */
    multipartForm?: object;
  }
}

/** Shared schemas, referenced by `$id` from routes and listed under components in the document. */
export const SHARED_SCHEMAS = [
  ErrorBody,
  TaskView,
  TaskList,
  TaskEvent,
  TaskEvents,
  SyncFailure,
  SyncUnavailable,
  BulkCancelResult,
  MachineView,
  MachineList,
  CallbackTryView,
  CallbackDeliveryView,
  TaskCallbacks,
  CallbackPayload,
  AvatarView,
  AvatarList,
  AvatarWarming,
  VoiceView,
  VoiceList,
] as const;

export function addSharedSchemas(app: FastifyInstance): void {
  for (const schema of SHARED_SCHEMAS) app.addSchema(schema);
}

/** `/openapi.json` (OpenAPI 3) and Swagger UI at `/docs`. */
export async function registerDocs(app: FastifyInstance, version: string): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "Multi-HeyGem",
        version,
        description:
          "Lip-sync video synthesis on a fleet of GPU machines. Upload an audio file and a video of a " +
          "person; get back an MP4 of the person speaking the audio. Errors are JSON " +
          '`{"error": CODE, "message": sentence, "field"?: name}`.',
      },
      tags: [
        { name: "tasks", description: "Create and follow lip-sync tasks" },
        {
          name: "avatars",
          description:
            "Template videos uploaded once: tasks name one with avatar_id and upload only their audio",
        },
        {
          name: "voices",
          description:
            "Cloned voices: a recording (or an avatar's own sound) prepared on a machine that can clone, " +
            "for text tasks to speak in",
        },
        {
          name: "callbacks",
          description:
            "A task's callback deliveries (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature headers)",
        },
        { name: "machines", description: "The GPU machines: health, load, drain" },
      ],
      components: {
        securitySchemes: {
          apiKey: {
            type: "http",
            scheme: "bearer",
            description:
              "An API key from the gateway's --api-keys file (`multi-heygem keys add`), sent as " +
              "`Authorization: Bearer <key>`. Roles: submit (create tasks, see its own), admin (everything).",
          },
        },
      },
    },
    // A HEAD that Fastify answers for every GET is not an operation of its own: listing each would
    // double the document. The one HEAD that matters (a result's size) is declared on its own.
    exposeHeadRoutes: false,
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === "string" ? json.$id : `def-${i}`,
    },
    transform: ({ schema, url, route }) => {
      if (!schema) return { schema, url };
      // The requirement the access hook enforces, so the document cannot promise another.
      const described = describeResponses(
        describeAccess(schema as Record<string, unknown>, route.config?.access),
      );
      const form = route.config?.multipartForm;
      // Fastify must not validate the streamed body, but the document should still describe it.
      return { schema: form ? { ...described, body: form } : described, url };
    },
    transformObject: (documentObject) => {
      if (!("openapiObject" in documentObject)) return documentObject.swaggerObject;
      const { openapiObject } = documentObject;
      const schemas = (openapiObject.components?.schemas ?? {}) as Record<string, Record<string, unknown>>;
      for (const [name, example] of Object.entries(OPENAPI_EXAMPLES)) {
        const schema = schemas[name];
        if (schema) schema.example = example;
      }
      return openapiObject;
    },
  });
  // Swagger UI's own routes (page, assets) are open, like the document they show.
  await app.register(async (scope) => {
    scope.addHook("onRoute", (route) => {
      route.config = { ...route.config, access: "public" };
    });
    await scope.register(swaggerUi, { routePrefix: "/docs" });
  });
  app.get("/openapi.json", { schema: { hide: true }, config: { access: "public" } }, async () =>
    app.swagger(),
  );
}
