import type { Static, TSchema } from "@sinclair/typebox";
import type { FastifyTypeProvider } from "fastify";

/**
 * Lets route handlers take their request and reply types from the TypeBox schemas they declare,
 * so each wire type is written once (house-style.md, "Types from schemas, not twice"). It is the
 * whole of @fastify/type-provider-typebox's type-level part; Fastify's own Ajv does the validation.
 *
 * Usage: `const app = fastify().withTypeProvider<TypeBoxTypeProvider>()`.
 */
export interface TypeBoxTypeProvider extends FastifyTypeProvider {
  readonly validator: this["schema"] extends TSchema ? Static<this["schema"]> : unknown;
  readonly serializer: this["schema"] extends TSchema ? Static<this["schema"]> : unknown;
}
