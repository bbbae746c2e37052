/**
 * The gateway's errors: every 4xx/5xx answer is JSON `{"error": "<what went wrong>", "code":
 * "<STH error code or shardhub's>"}` — STH's `{"error": …}` shape, with a code a program can test.
 *
 * {@link fromDomain} maps shardhub's typed errors (unknown instance, sequence in use, …) to them.
 *
 * @since 0.4.0
 */
import { Effect, Schema } from "effect"
import { HttpServerResponse } from "effect/http"
import { httpStatus, type Statused } from "../base/HttpStatus.ts"

const fields = {
  /** What went wrong, for a human. */
  error: Schema.String,
  /** A stable code: STH's `ERR_…` codes where STH has one. */
  code: Schema.String
}

/** @since 0.4.0 */
export class BadRequest extends Schema.Error<BadRequest>("shardhub/http/BadRequest")(fields, {
  httpApiStatus: 400,
  description: "The request is malformed: a body that is not what the endpoint takes, or a bad parameter."
}) {}

/** @since 0.4.0 */
export class Unauthorized extends Schema.Error<Unauthorized>("shardhub/http/Unauthorized")(fields, {
  httpApiStatus: 401,
  description: "No valid bearer token (the gateway requires SHARDHUB_TOKEN)."
}) {}

/** @since 0.4.0 */
export class NotFound extends Schema.Error<NotFound>("shardhub/http/NotFound")(fields, {
  httpApiStatus: 404,
  description: "No such instance, sequence, topic or route."
}) {}

/** @since 0.4.0 */
export class MethodNotAllowed extends Schema.Error<MethodNotAllowed>("shardhub/http/MethodNotAllowed")(fields, {
  httpApiStatus: 405,
  description: "The instance takes its input from a topic."
}) {}

/** @since 0.4.0 */
export class Conflict extends Schema.Error<Conflict>("shardhub/http/Conflict")(fields, {
  httpApiStatus: 409,
  description: "The id is taken, or the sequence still has instances."
}) {}

/** @since 0.4.0 */
export class PayloadTooLarge extends Schema.Error<PayloadTooLarge>("shardhub/http/PayloadTooLarge")(fields, {
  httpApiStatus: 413,
  description: "The body is over the endpoint's limit."
}) {}

/** @since 0.4.0 */
export class UnsupportedMediaType extends Schema.Error<UnsupportedMediaType>("shardhub/http/UnsupportedMediaType")(
  fields,
  { httpApiStatus: 415, description: "The Content-Type is not one the endpoint takes." }
) {}

/** @since 0.4.0 */
export class Unprocessable extends Schema.Error<Unprocessable>("shardhub/http/Unprocessable")(fields, {
  httpApiStatus: 422,
  description: "The package or id is invalid."
}) {}

/** @since 0.4.0 */
export class InternalError extends Schema.Error<InternalError>("shardhub/http/InternalError")(fields, {
  httpApiStatus: 500,
  description: "The cluster failed to do it (the store or a runner)."
}) {}

/** @since 0.4.0 */
export class Unavailable extends Schema.Error<Unavailable>("shardhub/http/Unavailable")(fields, {
  httpApiStatus: 503,
  description: "No runner answered in time (the instance's runner is gone and no other took it over yet)."
}) {}

/**
 * Every error an endpoint may answer with.
 *
 * @since 0.4.0
 */
export const all = [
  BadRequest,
  Unauthorized,
  NotFound,
  MethodNotAllowed,
  Conflict,
  PayloadTooLarge,
  UnsupportedMediaType,
  Unprocessable,
  InternalError,
  Unavailable
] as const

/** @since 0.4.0 */
export type HttpError = InstanceType<typeof all[number]>

/**
 * A JSON error response, for answers outside an endpoint (unknown routes, the token check).
 *
 * @since 0.4.0
 */
export const response = (status: number, error: string, code: string) =>
  HttpServerResponse.jsonUnsafe({ error, code }, { status })

/** @since 0.4.0 */
export const isHttpError = (u: unknown): u is HttpError => all.some((error) => u instanceof error)

/**
 * The HTTP error for one of shardhub's typed errors.
 *
 * @since 0.4.0
 */
export const fromDomain = (error: Statused | HttpError): HttpError => {
  if (isHttpError(error)) return error
  const body = { error: error.message, code: error._tag }
  switch (httpStatus(error)) {
    case 404:
      return new NotFound({ ...body, code: "ERR_NOT_FOUND" })
    case 409:
      return new Conflict(body)
    case 422:
      return new Unprocessable(body)
    case 400:
      return new BadRequest(body)
    case 503:
      return new Unavailable(body)
    default:
      return new InternalError(body)
  }
}

/**
 * `effect` with shardhub's typed errors mapped to HTTP errors ({@link fromDomain}).
 *
 * @since 0.6.0
 */
export const http = <A, E extends Statused | HttpError, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, HttpError, R> =>
  Effect.mapError(effect, fromDomain)
