/**
 * Byte helpers for stream tests.
 */
import { Stream } from "effect"

/** `data` as a stream of `chunk`-sized pieces (views, no copies). */
export const chunked = (data: Uint8Array, chunk = 64 * 1024) =>
  Stream.fromIterable(Array.from({ length: Math.ceil(data.length / chunk) }, (_, i) => data.subarray(i * chunk, (i + 1) * chunk)))

/** The chunks of a collected stream, joined. */
export const concat = (chunks: ReadonlyArray<Uint8Array>) => Buffer.concat(chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength)))
