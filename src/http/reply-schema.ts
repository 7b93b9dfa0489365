import type { Static, TSchema } from "@sinclair/typebox";
import { type TypeCheck, TypeCompiler } from "@sinclair/typebox/compiler";
import { ProtocolError } from "../errors.js";

/**
 * The schema of one kind of answer from a peer (a worker agent, a HeyGem container), compiled once
 * when the client's module loads. Every answer goes through it at the boundary and comes out typed,
 * or as a ProtocolError naming the endpoint, the first mismatch and the start of the body: nothing
 * read from the wire reaches the rest of the code on a cast.
 */
export class ReplySchema<T extends TSchema> {
  private readonly check: TypeCheck<T>;

  /** @param expected What a matching answer is, for the error: "a worker's job view". */
  constructor(
    schema: T,
    private readonly expected: string,
  ) {
    this.check = TypeCompiler.Compile(schema);
  }

  /** The body, parsed as JSON whatever its content type says, as its type. */
  parse(endpoint: string, status: number, body: string): Static<T> {
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      throw new ProtocolError(endpoint, status, "not JSON", body, this.expected);
    }
    return this.decode(endpoint, status, value, body);
  }

  /** A value already parsed from `body` (a part of an answer read in steps), as its type. */
  decode(endpoint: string, status: number, value: unknown, body: string): Static<T> {
    if (this.check.Check(value)) return value;
    const first = this.check.Errors(value).First();
    const problem = first ? `${first.path || "(the whole answer)"}: ${first.message}` : "does not match";
    throw new ProtocolError(endpoint, status, problem, body, this.expected);
  }

  /** Whether a value matches, for answers that may be of several kinds (an error body, or a page). */
  matches(value: unknown): value is Static<T> {
    return this.check.Check(value);
  }
}
