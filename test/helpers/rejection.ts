import { expect } from "vitest";

/**
 * The error `call` rejects with, typed as `type`; fails the test when it resolves or rejects with
 * something else. For tests that go on to assert the error's fields.
 */
export async function rejection<E extends Error>(
  call: Promise<unknown>,
  type: abstract new (...args: never[]) => E,
): Promise<E> {
  const err: unknown = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(type);
  if (!(err instanceof type)) throw new Error(`expected a rejection with ${type.name}`);
  return err;
}
