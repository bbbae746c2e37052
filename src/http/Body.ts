/**
 * Request bodies as STH takes them: JSON for operations (the Content-Type must say JSON, even
 * for an empty body, which is `{}`), byte streams for uploads and input, each with its own size
 * limit and accepted content types.
 *
 * The Content-Type rules are also a guard against web pages: a browser sends a cross-origin
 * POST without asking first only with a "simple" type (none, `text/plain`, forms), so an
 * operation that demands JSON or an upload that demands a declared type cannot be sent blind.
 *
 * @since 0.4.0
 */
import { Effect, Schema, Stream } from "effect"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import { BadRequest, PayloadTooLarge, UnsupportedMediaType } from "./HttpErrors.ts"

/** The largest JSON body an operation takes. */
export const maxJsonBytes = 1024 * 1024

/** The largest sequence package the gateway takes. */
export const maxPackageBytes = 256 * 1024 * 1024
/** The Content-Types a package or bundle upload may have. */
export const packageTypes = ["application/octet-stream", "application/gzip", "application/x-gzip", "application/x-tar"]

/** How long a body read whole may send nothing before the request is refused. */
export const idleTimeout = "30 seconds"

/** The media type of a request, lower-cased and without parameters; `undefined` when absent. */
export const mediaType = (request: HttpServerRequest): string | undefined => {
  const header = request.headers["content-type"]
  if (header === undefined || header.trim() === "") return undefined
  return header.split(";")[0]!.trim().toLowerCase()
}

/** Fails with 413 when Content-Length already says the body is over `limit`. */
const declaredSize = (request: HttpServerRequest, limit: number, what: string) => {
  const length = Number(request.headers["content-length"] ?? "0")
  return Number.isFinite(length) && length > limit
    ? Effect.fail(new PayloadTooLarge({ error: `${what} is ${length} bytes; the limit is ${limit}`, code: "ERR_PAYLOAD_TOO_LARGE" }))
    : Effect.void
}

/** Fails when a body sends nothing for `idleTimeout`. */
const withIdleTimeout = <A>(bytes: Stream.Stream<A, BadRequest>) =>
  bytes.pipe(
    Stream.timeoutOrElse({
      duration: idleTimeout,
      orElse: () => Stream.fail(new BadRequest({ error: `the body sent nothing for ${idleTimeout}`, code: "ERR_BODY_TIMEOUT" }))
    })
  )

/**
 * The body as a stream bounded by `limit`, never held whole: 413 at once when Content-Length
 * is over it, and as soon as the bytes pass it; 400 when it sends nothing for `idleTimeout`.
 *
 * @since 0.5.0
 */
export const bounded = (request: HttpServerRequest, limit: number, what: string) =>
  Stream.unwrap(Effect.as(declaredSize(request, limit, what), Stream.suspend(() => {
    let total = 0
    return withIdleTimeout(stream(request)).pipe(
      Stream.mapEffect((chunk) => {
        total += chunk.length
        return total > limit
          ? Effect.fail(new PayloadTooLarge({ error: `${what} is over the limit of ${limit} bytes`, code: "ERR_PAYLOAD_TOO_LARGE" }))
          : Effect.succeed(chunk)
      })
    )
  })))

/**
 * The body's bytes, failing with 413 as soon as they pass `limit`.
 *
 * @since 0.4.0
 */
export const readAll = (request: HttpServerRequest, limit: number, what: string) =>
  Effect.map(Stream.runCollect(bounded(request, limit, what)), (chunks) => Buffer.concat(Array.from(chunks)))

const isJson = (type: string | undefined) => type === "application/json" || type === "text/json"

/**
 * A JSON body decoded with `schema`. It needs a JSON Content-Type (400
 * `ERR_CANNOT_PARSE_CONTENT` otherwise, like STH); an empty body is `{}`.
 *
 * @since 0.4.0
 */
export const json = <S extends Schema.Top & { readonly DecodingServices: never }>(request: HttpServerRequest, schema: S) =>
  Effect.gen(function*() {
    if (!isJson(mediaType(request))) {
      return yield* new BadRequest({
        error: `the body must be JSON with Content-Type: application/json (got ${request.headers["content-type"] ?? "none"})`,
        code: "ERR_CANNOT_PARSE_CONTENT"
      })
    }
    const bytes = yield* readAll(request, maxJsonBytes, "the JSON body")
    const text = bytes.toString("utf8").trim()
    let value: unknown = {}
    if (text !== "") {
      try {
        value = JSON.parse(text)
      } catch (error) {
        return yield* new BadRequest({ error: `the body is not valid JSON: ${(error as Error).message}`, code: "ERR_CANNOT_PARSE_CONTENT" })
      }
    }
    return yield* Schema.decodeUnknownEffect(schema)(value).pipe(
      Effect.mapError((error) => new BadRequest({ error: `invalid body: ${error.message}`, code: "ERR_INVALID_BODY" }))
    )
  })

/**
 * Checks the Content-Type of a byte stream against `accepted`; answers the media type to pass
 * on. An absent one means the first of them, unless `required` (uploads).
 *
 * @since 0.4.0
 */
export const streamType = (
  request: HttpServerRequest,
  accepted: ReadonlyArray<string>,
  options: { readonly failure?: "415" | "400"; readonly required?: boolean } = {}
) => {
  const failure = options.failure ?? "415"
  const declared = mediaType(request)
  if (declared === undefined && options.required === true) {
    return Effect.fail(
      new UnsupportedMediaType({ error: `a Content-Type is required here: one of ${accepted.join(", ")}`, code: "ERR_INVALID_CONTENT_TYPE" })
    )
  }
  const type = declared ?? accepted[0]!
  if (accepted.includes(type)) return Effect.succeed(type)
  const error = `Content-Type ${type} is not accepted here; use one of ${accepted.join(", ")}`
  return failure === "415"
    ? Effect.fail(new UnsupportedMediaType({ error, code: "ERR_INVALID_CONTENT_TYPE" }))
    : Effect.fail(new BadRequest({ error, code: "ERR_INVALID_CONTENT_TYPE" }))
}

/**
 * Whether the body ends the target stream: header `x-end-stream`, default true.
 *
 * @since 0.4.0
 */
export const endsStream = (request: HttpServerRequest) => request.headers["x-end-stream"] !== "false"

/**
 * The request body as a Stream (read errors become `BadRequest`).
 *
 * @since 0.4.0
 */
export const stream = (request: HttpServerRequest) =>
  request.stream.pipe(
    Stream.mapError((error) => new BadRequest({ error: `could not read the body: ${error.message}`, code: "ERR_CANNOT_READ_BODY" }))
  )
