/**
 * The HTTP gateway: a client-only participant serving STH's `/api/v1` (see `Api`), its OpenAPI
 * document (`/api/v1/openapi.json`) and docs page (`/api/v1/docs`), and `/metrics`.
 *
 * - Binds `127.0.0.1` by default. Bound to any other address it **requires** a bearer token
 *   (`SHARDHUB_TOKEN`) and refuses to start without one; with a token set, every request needs
 *   `Authorization: Bearer <token>`.
 * - Every 4xx/5xx answer is JSON `{error, code}`, including unknown routes and bodies the API
 *   could not decode.
 * - Every request gets a line on stdout (unless `SHARDHUB_GATEWAY_ACCESS_LOG=false`).
 *
 * @since 0.4.0
 */
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Config, Console, Effect, Layer, Option, Redacted, Schema } from "effect"
import { HttpRouter, HttpServer, HttpServerResponse } from "effect/http"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import { HttpApiBuilder, HttpApiError, HttpApiScalar } from "effect/http-api"
import * as Crypto from "node:crypto"
import { createServer } from "node:http"
import { Api } from "./Api.ts"
import * as Handlers from "./Handlers.ts"
import * as HttpErrors from "./HttpErrors.ts"
import * as Metrics from "./Metrics.ts"

/**
 * @since 0.4.0
 */
export interface GatewayConfig {
  /** `SHARDHUB_GATEWAY_HOST` (default 127.0.0.1). */
  readonly host: string
  /** `SHARDHUB_GATEWAY_PORT` (default 8000, like STH; 0 picks a free port). */
  readonly port: number
  /** `SHARDHUB_TOKEN`: the bearer token requests must carry. */
  readonly token: Option.Option<Redacted.Redacted<string>>
  /** `SHARDHUB_GATEWAY_ACCESS_LOG` (default true): a line per request on stdout. */
  readonly accessLog: boolean
}

/** @since 0.4.0 */
export const gatewayConfig: Config.Config<GatewayConfig> = Config.all({
  host: Config.String("SHARDHUB_GATEWAY_HOST").pipe(Config.withDefault("127.0.0.1")),
  port: Config.Int("SHARDHUB_GATEWAY_PORT").pipe(Config.withDefault(8000)),
  token: Config.option(Config.Redacted("SHARDHUB_TOKEN")),
  accessLog: Config.Boolean("SHARDHUB_GATEWAY_ACCESS_LOG").pipe(Config.withDefault(true))
})

/**
 * The gateway cannot start as configured.
 *
 * @since 0.4.0
 */
export class GatewayConfigError extends Schema.TaggedError<GatewayConfigError>()("GatewayConfigError", {
  message: Schema.String
}) {}

/** Whether `host` only accepts connections from this machine. */
export const isLoopback = (host: string) => host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host)

const reasons: Record<number, [string, string]> = {
  400: ["bad request", "ERR_BAD_REQUEST"],
  401: ["a bearer token is required", "ERR_UNAUTHORIZED"],
  404: ["not found", "ERR_NOT_FOUND"],
  405: ["method not allowed", "ERR_METHOD_NOT_ALLOWED"],
  413: ["the body is too large", "ERR_PAYLOAD_TOO_LARGE"],
  415: ["unsupported content type", "ERR_INVALID_CONTENT_TYPE"]
}

const fallback = (status: number) => reasons[status] ?? [status >= 500 ? "internal error" : "request failed", status >= 500 ? "ERR_INTERNAL_ERROR" : "ERR_REQUEST_FAILED"]

/** The JSON answer for a failure no endpoint turned into a response. */
const failureResponse = (cause: Cause.Cause<unknown>, request: HttpServerRequest) => {
  const error = Cause.squash(cause)
  const where = `${request.method} ${request.url}`
  if (typeof error === "object" && error !== null && "reason" in error && (error as any).reason?._tag === "RouteNotFound") {
    return Effect.succeed(HttpErrors.response(404, `no such endpoint: ${where}`, "ERR_NOT_FOUND"))
  }
  if (HttpApiError.HttpApiSchemaError.is(error)) {
    if (error.kind === "Body" || error.kind === "ResponseHeaders") {
      return Effect.as(Effect.logError(`${where}: could not encode the answer`, cause), HttpErrors.response(500, "could not encode the answer", "ERR_INTERNAL_ERROR"))
    }
    return Effect.succeed(HttpErrors.response(400, `invalid ${error.kind.toLowerCase()}: ${error.cause.message}`, "ERR_BAD_REQUEST"))
  }
  if (HttpApiError.HttpApiPayloadTooLarge.is(error)) {
    return Effect.succeed(HttpErrors.response(413, "the body is too large", "ERR_PAYLOAD_TOO_LARGE"))
  }
  return Effect.as(
    Effect.logError(`${where} failed`, cause),
    HttpErrors.response(500, `internal error: ${error instanceof Error ? error.message : String(error)}`, "ERR_INTERNAL_ERROR")
  )
}

const sameToken = (given: string, token: string) => {
  const a = Crypto.createHash("sha256").update(given).digest()
  const b = Crypto.createHash("sha256").update(token).digest()
  return Crypto.timingSafeEqual(a, b)
}

/** A request target as the access log prints it: spaces and control characters percent-encoded (no terminal escapes, one field). */
const loggedUrl = (url: string) =>
  url.replace(/[\x00-\x20\x7f-\x9f]/g, (char) => `%${char.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}`)

/** The access log line of a request, once its answer (for a stream: its headers) was ready. */
const accessLine = (request: HttpServerRequest, status: number, ms: number) =>
  `${new Date().toISOString()} ${request.method} ${loggedUrl(request.url)} ${status} ${ms.toFixed(1)} ms ${request.remoteAddress.pipe(Option.getOrElse(() => "-"))}`

/** The answer to a request: the token check, then a JSON body for every error answer. */
const answer = <E, R>(
  token: Option.Option<Redacted.Redacted<string>>,
  request: HttpServerRequest,
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
) =>
  Effect.gen(function*() {
    if (Option.isSome(token)) {
      const header = request.headers["authorization"] ?? ""
      const given = header.startsWith("Bearer ") ? header.slice(7).trim() : ""
      if (!sameToken(given, Redacted.value(token.value))) {
        return HttpErrors.response(401, "a valid bearer token is required (Authorization: Bearer $SHARDHUB_TOKEN)", "ERR_UNAUTHORIZED")
          .pipe(HttpServerResponse.setHeader("www-authenticate", "Bearer"))
      }
    }
    const response = yield* effect.pipe(
      Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : failureResponse(cause, request))
    )
    if (response.status >= 400 && response.body._tag === "Empty") {
      const [error, code] = fallback(response.status)
      return HttpErrors.response(response.status, error, code)
    }
    return response
  })

/**
 * The global middleware: {@link answer}, and a line in the access log once it is ready.
 */
const guard = (token: Option.Option<Redacted.Redacted<string>>, accessLog: boolean) =>
  HttpRouter.middleware((effect) =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest
      if (!accessLog) return yield* answer(token, request, effect)
      const started = performance.now()
      return yield* answer(token, request, effect).pipe(
        Effect.onExit((exit) =>
          Console.log(accessLine(request, exit._tag === "Success" ? exit.value.status : 499, performance.now() - started))
        )
      )
    }), { global: true })

/**
 * The routes: the API, its docs page, `/metrics`.
 *
 * @since 0.4.0
 */
export const routes = (token: Option.Option<Redacted.Redacted<string>>, accessLog = false) =>
  Layer.mergeAll(
    HttpApiBuilder.layer(Api, { openapiPath: "/api/v1/openapi.json" }).pipe(Layer.provide(Handlers.layer)),
    HttpApiScalar.layer(Api, { path: "/api/v1/docs" }),
    HttpRouter.add(
      "GET",
      "/metrics",
      Effect.map(Metrics.collect, (text) => HttpServerResponse.text(text, { contentType: "text/plain; version=0.0.4" }))
    ),
    guard(token, accessLog)
  )

/**
 * The gateway on `config.host:config.port`, on the clients of a cluster participant.
 *
 * @since 0.4.0
 */
export const layer = (config: GatewayConfig) =>
  Layer.unwrap(Effect.gen(function*() {
    if (!isLoopback(config.host) && Option.isNone(config.token)) {
      return yield* new GatewayConfigError({
        message: `the gateway would listen on ${config.host}, which other machines can reach: set SHARDHUB_TOKEN to a secret ` +
          "every request must carry as a bearer token, or bind 127.0.0.1"
      })
    }
    const announce = Layer.effectDiscard(Effect.gen(function*() {
      const server = yield* HttpServer.HttpServer
      const port = "port" in server.address ? server.address.port : config.port
      yield* Console.log(`gateway          http://${config.host}:${port}/api/v1 (docs /api/v1/docs, metrics /metrics)`)
    }))
    return Layer.mergeAll(HttpRouter.serve(routes(config.token, config.accessLog), { disableLogger: true, disableListenLog: true }), announce).pipe(
      Layer.provide(NodeHttpServer.layer(() => createServer({ requestTimeout: 0 }), { port: config.port, host: config.host }))
    )
  }))
