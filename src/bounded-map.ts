/**
 * A Map that holds at most `limit` entries: setting a key makes it the newest, and past the limit
 * the oldest one goes. For memories worth keeping but not worth growing without end in a process
 * that runs for months: which blobs a machine holds, which uploads were forwarded where, cached
 * statements, recently read rows.
 */
export class BoundedMap<K, V> {
  // A Map iterates in insertion order, so its first key is the one set longest ago.
  private readonly entries = new Map<K, V>();

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`limit must be a whole number ≥ 1: ${limit}`);
  }

  get size(): number {
    return this.entries.size;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  get(key: K): V | undefined {
    return this.entries.get(key);
  }

  set(key: K, value: V): this {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.limit) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    return this;
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}
