/**
 * The gateway's long-lived responses: byte streams and NDJSON.
 *
 * @since 0.6.0
 */
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Stream } from "effect"
import { HttpServerResponse } from "effect/http"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import type { Readable } from "node:stream"

/**
 * A long-lived byte stream. An empty first chunk makes the server send the headers at once, so
 * a client waiting for them (STH's client resolves on them, a follower waits on them) does not
 * wait for the first byte.
 *
 * @since 0.6.0
 */
export const stream = <E>(bytes: Stream.Stream<Uint8Array, E>, contentType = "application/octet-stream") =>
  HttpServerResponse.stream(Stream.concat(Stream.make(new Uint8Array(0)), bytes), { contentType })

/**
 * A long-lived byte stream from a Node readable, piped into the response by Node (no Stream
 * chunk per read: bulk bytes). Its headers go out as the pipe begins, as {@link stream}'s do;
 * a client that leaves destroys `bytes`.
 *
 * @since 0.9.0
 */
export const piped = (request: HttpServerRequest, bytes: Readable, contentType = "application/octet-stream") => {
  const response = NodeHttpServerRequest.toServerResponse(request)
  // The server pipes a raw body right after writing the head; 'pipe' is emitted then.
  response.once("pipe", () => "flushHeaders" in response && response.flushHeaders())
  return HttpServerResponse.raw(bytes, { contentType })
}

/**
 * Values as NDJSON lines.
 *
 * @since 0.6.0
 */
export const ndjsonLines = <A, E, R>(values: Stream.Stream<A, E, R>): Stream.Stream<Uint8Array, E, R> =>
  Stream.map(values, (value) => new TextEncoder().encode(JSON.stringify(value) + "\n"))

/**
 * A long-lived NDJSON response of `values`.
 *
 * @since 0.6.0
 */
export const ndjson = <A, E>(values: Stream.Stream<A, E>) => stream(ndjsonLines(values), "application/x-ndjson")
