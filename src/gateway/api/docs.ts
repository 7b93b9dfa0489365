import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance } from "fastify";
import { ErrorBody } from "../../protocol/schemas.js";
import {
  MachineList,
  MachineView,
  SyncFailure,
  SyncUnavailable,
  TaskEvent,
  TaskEvents,
  TaskList,
  TaskView,
} from "./schemas.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /** The multipart form of a route, shown in the OpenAPI document (the handler streams it itself). */
    multipartForm?: object;
  }
}

/** Shared schemas, referenced by `$id` from routes and listed under components in the document. */
export function addSharedSchemas(app: FastifyInstance): void {
  for (const schema of [
    ErrorBody,
    TaskView,
    TaskList,
    TaskEvent,
    TaskEvents,
    SyncFailure,
    SyncUnavailable,
    MachineView,
    MachineList,
  ]) {
    app.addSchema(schema);
  }
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
        { name: "machines", description: "The GPU machines: health, load, drain" },
      ],
    },
    exposeHeadRoutes: true,
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === "string" ? json.$id : `def-${i}`,
    },
    transform: ({ schema, url, route }) => {
      const form = route.config?.multipartForm;
      if (!form || !schema) return { schema, url };
      // Fastify must not validate the streamed body, but the document should still describe it.
      return { schema: { ...schema, body: form }, url };
    },
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
}
