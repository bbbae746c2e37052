/**
 * The HTTP gateway: a client-only participant serving STH's `/api/v1` (see `Api`), its OpenAPI
 * document (`/api/v1/openapi.json`) and docs page (`/api/v1/docs`), and `/metrics`.
 *
 * - **Who may call**: the gateway's owner — a process of this machine that runs as the
 *   gateway's own user (or root), found by the peer's socket owner in the kernel's socket table
 *   (`PeerCredentials`) — with no token and no setup; anyone else (other users, programs confined
 *   to another user, other machines) with `Authorization: Bearer <token>`: `SHARDHUB_TOKEN`, or
 *   the token in `$SHARDHUB_HOME/gateway.token` (made on first start, 0600). Binds `127.0.0.1`
 *   by default; bound to any other address it prints how remote callers send the token.
 * - Web pages cannot drive it: a request whose `Host` is not one of this machine's names (DNS
 *   rebinding) or that comes from another origin (`Origin`, `Sec-Fetch-Site`) gets 403 before any
 *   work. CORS is off unless `SHARDHUB_GATEWAY_CORS_ORIGINS` lists origins.
 * - Bounded: request headers must arrive within `SHARDHUB_GATEWAY_HEADERS_TIMEOUT`; connections
 *   are capped per client address (an IPv6 /64) and in all, and connections no admitted request
 *   has vouched for have a budget and a deadline of their own (`Connections`), so they cannot
 *   starve the callers who are in. Long-lived streams are not timed out.
 * - Every 4xx/5xx answer is JSON `{error, code}`, including unknown routes and bodies the API
 *   could not decode.
 * - Every request gets a line on stdout (unless `SHARDHUB_GATEWAY_ACCESS_LOG=false`).
 *
 * @since 0.4.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Cause, Config, Console, Duration, Effect, Layer, Option, PubSub, Redacted, Schema } from "effect"
import { HttpRouter, HttpServer, HttpServerResponse } from "effect/http"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import { HttpApiBuilder, HttpApiError, HttpApiScalar } from "effect/http-api"
import * as Crypto from "node:crypto"
import { createServer, type IncomingMessage } from "node:http"
import * as Os from "node:os"
import * as Home from "../base/Home.ts"
import { isLoopback, Security } from "../transport/Security.ts"
import * as HubCredential from "../instance/HubCredential.ts"
import { Api } from "./Api.ts"
import * as Connections from "./Connections.ts"
import * as Dashboard from "./Dashboard.ts"
import * as GatewayFile from "./GatewayFile.ts"
import * as Handlers from "./Handlers.ts"
import * as HubFeed from "./HubFeed.ts"
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
  /** `SHARDHUB_TOKEN`: the bearer token of callers other than the owner (default: `$SHARDHUB_HOME/gateway.token`). */
  readonly token: Option.Option<Redacted.Redacted<string>>
  /** `SHARDHUB_GATEWAY_ACCESS_LOG` (default true): a line per request on stdout. */
  readonly accessLog: boolean
  /**
   * `SHARDHUB_GATEWAY_ALLOWED_HOSTS` (comma-separated; `*` for any): `Host` names accepted
   * besides loopback names, the bound address and, when bound to all addresses, this
   * machine's hostname and interface addresses.
   */
  readonly allowedHosts: ReadonlyArray<string>
  /** `SHARDHUB_GATEWAY_CORS_ORIGINS` (comma-separated, e.g. `https://ops.example.com`): web origins allowed to call. */
  readonly corsOrigins: ReadonlyArray<string>
  /**
   * `SHARDHUB_GATEWAY_HEADERS_TIMEOUT` (default 5 seconds): a request's headers must arrive
   * within it, and a connection no admitted request has vouched for is closed after twice it.
   */
  readonly headersTimeout: Duration.Duration
  /** `SHARDHUB_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS` (default 128): open connections from one client address (an IPv6 /64). */
  readonly maxConnectionsPerAddress: number
  /** `SHARDHUB_GATEWAY_MAX_CONNECTIONS` (default 1000): open connections in all. */
  readonly maxConnections: number
  /** `SHARDHUB_GATEWAY_MAX_UNPROVEN` (default 256): connections not yet vouched for by an admitted request, in all. */
  readonly maxUnproven: number
  /** `SHARDHUB_GATEWAY_MAX_UNPROVEN_PER_ADDRESS` (default 32): such connections from one client address. */
  readonly maxUnprovenPerAddress: number
}

const list = (name: string) =>
  Config.String(name).pipe(
    Config.map((text) => text.split(",").map((item) => item.trim()).filter((item) => item !== "")),
    Config.withDefault([] as ReadonlyArray<string>)
  )

/** @since 0.4.0 */
export const gatewayConfig: Config.Config<GatewayConfig> = Config.all({
  host: Config.String("SHARDHUB_GATEWAY_HOST").pipe(Config.withDefault("127.0.0.1")),
  port: Config.Int("SHARDHUB_GATEWAY_PORT").pipe(Config.withDefault(8000)),
  token: Config.option(Config.Redacted("SHARDHUB_TOKEN")),
  accessLog: Config.Boolean("SHARDHUB_GATEWAY_ACCESS_LOG").pipe(Config.withDefault(true)),
  allowedHosts: list("SHARDHUB_GATEWAY_ALLOWED_HOSTS").pipe(Config.map((hosts) => hosts.map((host) => host.toLowerCase()))),
  corsOrigins: list("SHARDHUB_GATEWAY_CORS_ORIGINS").pipe(Config.map((origins) => origins.map((origin) => origin.toLowerCase()))),
  headersTimeout: Config.Duration("SHARDHUB_GATEWAY_HEADERS_TIMEOUT").pipe(Config.withDefault(Duration.seconds(5))),
  maxConnectionsPerAddress: Config.Int("SHARDHUB_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS").pipe(Config.withDefault(128)),
  maxConnections: Config.Int("SHARDHUB_GATEWAY_MAX_CONNECTIONS").pipe(Config.withDefault(1000)),
  maxUnproven: Config.Int("SHARDHUB_GATEWAY_MAX_UNPROVEN").pipe(Config.withDefault(256)),
  maxUnprovenPerAddress: Config.Int("SHARDHUB_GATEWAY_MAX_UNPROVEN_PER_ADDRESS").pipe(Config.withDefault(32))
})


const isWildcard = (host: string) => host === "0.0.0.0" || host === "::" || host === ""

/**
 * How a process of this machine reaches a server bound to `host` (as a URL's host part).
 *
 * @since 0.6.0
 */
export const localHost = (host: string) =>
  isWildcard(host) ? (host === "::" ? "[::1]" : "127.0.0.1") : host.includes(":") ? `[${host}]` : host

/** The name part of a `Host` header, lower-cased: without the port, IPv6 without brackets. */
const hostName = (header: string) => {
  const host = header.trim().toLowerCase()
  if (host.startsWith("[")) return host.slice(1, host.indexOf("]") < 0 ? undefined : host.indexOf("]"))
  const colon = host.indexOf(":")
  return colon < 0 ? host : host.slice(0, colon)
}

/**
 * Who may call: which `Host` names and which web origins. A browser can be made to send
 * requests to the gateway by any page it visits; these checks are what keep such a page out.
 */
interface Access {
  /** Whether a `Host` name is one this gateway answers to. */
  readonly hostAllowed: (name: string) => boolean
  /** Origins granted CORS. */
  readonly corsOrigins: ReadonlySet<string>
}

const access = (config: GatewayConfig): Access => {
  const names = new Set(config.allowedHosts)
  if (isWildcard(config.host)) {
    names.add(Os.hostname().toLowerCase())
    for (const addresses of Object.values(Os.networkInterfaces())) {
      for (const address of addresses ?? []) names.add(address.address.toLowerCase())
    }
  } else {
    names.add(config.host.toLowerCase())
  }
  const any = names.has("*")
  return {
    hostAllowed: (name) => any || isLoopback(name) || name.endsWith(".localhost") || names.has(name),
    corsOrigins: new Set(config.corsOrigins)
  }
}

/**
 * Why a request is refused before any work, or `undefined`.
 *
 * - `Host` must name this gateway: a page on `evil.example` that rebinds its name to 127.0.0.1
 *   sends `Host: evil.example`.
 * - A browser marks cross-origin requests with `Origin` (every POST, even "simple" ones sent
 *   without a preflight) and `Sec-Fetch-Site`; only the gateway's own origin and the configured
 *   CORS origins pass. Clients that are not browsers send neither.
 */
const refusal = (access: Access, request: HttpServerRequest): string | undefined => {
  const host = request.headers["host"]
  if (host !== undefined && !access.hostAllowed(hostName(host))) {
    return `Host ${JSON.stringify(host)} is not one this gateway answers to; add it to SHARDHUB_GATEWAY_ALLOWED_HOSTS`
  }
  const origin = request.headers["origin"]
  if (origin !== undefined) {
    const lower = origin.toLowerCase()
    const sameOrigin = host !== undefined && (lower === `http://${host.toLowerCase()}` || lower === `https://${host.toLowerCase()}`)
    if (!sameOrigin && !access.corsOrigins.has(lower)) {
      return `requests from the web origin ${JSON.stringify(origin)} are refused; list it in SHARDHUB_GATEWAY_CORS_ORIGINS to allow it`
    }
    return undefined
  }
  const site = request.headers["sec-fetch-site"]
  if (site === "cross-site" || site === "same-site") {
    return "cross-site requests are refused; list the calling origin in SHARDHUB_GATEWAY_CORS_ORIGINS to allow it"
  }
  return undefined
}

/** The headers and methods a CORS preflight allows. */
const corsPreflight = {
  "access-control-allow-methods": "GET, POST, PUT, DELETE",
  "access-control-allow-headers": "authorization, content-type, x-end-stream, x-seq-kill-inst",
  "access-control-max-age": "600"
}

const reasons: Record<number, [string, string]> = {
  400: ["bad request", "ERR_BAD_REQUEST"],
  401: ["a bearer token is required", "ERR_UNAUTHORIZED"],
  403: ["forbidden", "ERR_FORBIDDEN"],
  404: ["not found", "ERR_NOT_FOUND"],
  405: ["method not allowed", "ERR_METHOD_NOT_ALLOWED"],
  413: ["the body is too large", "ERR_PAYLOAD_TOO_LARGE"],
  415: ["unsupported content type", "ERR_INVALID_CONTENT_TYPE"]
}

/** The longest path parameter routed: ids and topic names are at most 128 characters. */
const maxParamLength = 256

const fallback = (status: number) => reasons[status] ?? [status >= 500 ? "internal error" : "request failed", status >= 500 ? "ERR_INTERNAL_ERROR" : "ERR_REQUEST_FAILED"]

/** The JSON answer for a failure no endpoint turned into a response. */
const failureResponse = (cause: Cause.Cause<unknown>, request: HttpServerRequest) => {
  const error = Cause.squash(cause)
  const where = `${request.method} ${request.url}`
  if (typeof error === "object" && error !== null && "reason" in error && (error as any).reason?._tag === "RouteNotFound") {
    const tooLong = typeof (error as any).reason.description === "string"
    return Effect.succeed(
      tooLong
        ? HttpErrors.response(400, `a path parameter is longer than ${maxParamLength} characters`, "ERR_BAD_REQUEST")
        : HttpErrors.response(404, `no such endpoint: ${where}`, "ERR_NOT_FOUND")
    )
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

/**
 * Who is let in: the owner's processes by their uid, everyone else by the token.
 */
interface Admission {
  readonly token: Redacted.Redacted<string>
  /** Checks an instance's hub credential (`Security.verify`). */
  readonly verify: (message: string, signature: string) => boolean
  /** The uids admitted without a token: the gateway's own, and root. */
  readonly owners: ReadonlySet<number>
  readonly connections: Connections.Connections
}

/** Whether `request` is let in; a request that is proves its connection. */
const admitted = (admission: Admission, request: HttpServerRequest) =>
  Effect.gen(function*() {
    const socket = (request.source as IncomingMessage).socket
    const header = request.headers["authorization"] ?? ""
    const given = header.startsWith("Bearer ") ? header.slice(7).trim() : ""
    const hubInstance = given === "" ? undefined : HubCredential.instanceOf(admission.verify, given)
    const ok = (given !== "" && sameToken(given, Redacted.value(admission.token))) ||
      (hubInstance !== undefined && HubCredential.allows(hubInstance, request.method, request.url)) ||
      admission.owners.has((yield* Effect.promise(() => admission.connections.peerUid(socket))) ?? -1)
    if (ok) admission.connections.prove(socket)
    return ok
  })

const ownerName = (() => {
  try {
    return Os.userInfo().username
  } catch {
    return `uid ${process.getuid?.()}`
  }
})()

/**
 * The answer to a request: the Host and Origin checks, a CORS preflight, the admission check,
 * then a JSON body for every error answer.
 */
const answer = <E, R>(
  access: Access,
  admission: Admission,
  request: HttpServerRequest,
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
) =>
  Effect.gen(function*() {
    const refused = refusal(access, request)
    if (refused !== undefined) return HttpErrors.response(403, refused, "ERR_FORBIDDEN")
    const origin = request.headers["origin"]?.toLowerCase()
    const cors = origin !== undefined && access.corsOrigins.has(origin)
      ? { "access-control-allow-origin": origin, "vary": "origin" }
      : undefined
    if (cors !== undefined && request.method === "OPTIONS") {
      return HttpServerResponse.empty({ status: 204, headers: { ...cors, ...corsPreflight } })
    }
    // The dashboard's files hold no data: a browser loads them without the token (it asks for
    // the token when the API wants it).
    const response = yield* (request.method === "GET" && Dashboard.isAsset(request.url) ? effect : authorized(admission, request, effect))
    return cors === undefined ? response : HttpServerResponse.setHeaders(response, cors)
  })

/** The admission check, then a JSON body for every error answer. */
const authorized = <E, R>(
  admission: Admission,
  request: HttpServerRequest,
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
) =>
  Effect.gen(function*() {
    if (!(yield* admitted(admission, request))) {
      return HttpErrors.response(
        401,
        `only processes of this machine's user ${ownerName} are let in without a token; send Authorization: Bearer <token> ` +
          "(SHARDHUB_TOKEN, or the gateway.token file in the gateway's SHARDHUB_HOME)",
        "ERR_UNAUTHORIZED"
      ).pipe(HttpServerResponse.setHeader("www-authenticate", "Bearer"))
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
const guard = (config: GatewayConfig, admission: Admission, feed: HubFeed.HubFeed["Service"]) => {
  const who = access(config)
  return HttpRouter.middleware((effect) =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest
      const receivedAt = Date.now()
      const started = performance.now()
      return yield* answer(who, admission, request, effect).pipe(
        Effect.onExit((exit) =>
          Effect.suspend(() => {
            const status = exit._tag === "Success" ? exit.value.status : 499
            audit(feed, request, status, receivedAt)
            if (!config.accessLog) return Effect.void
            const line = accessLine(request, status, performance.now() - started)
            PubSub.publishUnsafe(feed.log, { level: "INFO", msg: line, ts: Date.now(), from: "gateway" })
            return Console.log(line)
          })
        )
      )
    }), { global: true })
}

/** The audit record of an API operation (the feeds themselves are not audited). */
const audit = (feed: HubFeed.HubFeed["Service"], request: HttpServerRequest, status: number, receivedAt: number) => {
  const path = request.url.split("?")[0]!
  const api = /^\/api\/(?:v1|shardhub\/v1)(?=\/)/.exec(path)?.[0]
  if (api === undefined || path === "/api/v1/audit" || path === "/api/v1/log") return
  const operation = path.slice(api.length)
  const object = /^\/(?:instances?|sequence|topics?)\/([^/]+)/.exec(operation)?.[1]
  const declared = Number(request.headers["content-length"])
  PubSub.publishUnsafe(feed.audit, {
    opState: "REQUEST_END",
    opCode: `${request.method} ${operation.replace(/^(\/(?:instances?|sequence|topics?))\/[^/]+/, "$1/:id")}`,
    requestId: Crypto.randomUUID(),
    ...(object === undefined ? {} : { objectId: decodeURIComponent(object) }),
    method: request.method,
    path: loggedUrl(path),
    status,
    rx: Number.isFinite(declared) ? declared : 0,
    receivedAt,
    endedAt: Date.now()
  })
}

/**
 * The routes: the API, its docs page, `/metrics`.
 *
 * @since 0.4.0
 */
export const routes = (config: GatewayConfig, admission: Admission) =>
  Layer.unwrap(Effect.map(Effect.service(HubFeed.HubFeed), (feed) =>
    Layer.mergeAll(
      HttpApiBuilder.layer(Api, { openapiPath: "/api/v1/openapi.json" }).pipe(Layer.provide(Handlers.layer)),
      HttpApiScalar.layer(Api, { path: "/api/v1/docs" }),
      Dashboard.routes,
      HttpRouter.add(
        "GET",
        "/metrics",
        Effect.map(Metrics.collect, (text) => HttpServerResponse.text(text, { contentType: "text/plain; version=0.0.4" }))
      ),
      guard(config, admission, feed)
    )))

/**
 * The HTTP server with its bounds: headers must arrive within `headersTimeout` (checked every
 * quarter of it), connections are capped per address and in all, and unproven ones apart
 * (`Connections`). There is no request timeout (output streams live as long as their instance)
 * and no idle timeout on a request in progress (an instance may be silent for hours); an idle
 * keep-alive connection closes after 5 s (Node's default), and bodies read whole have their own
 * idle deadline (`Body`).
 */
const boundedServer = (config: GatewayConfig) => {
  const headersTimeout = Math.max(1, Duration.toMillis(config.headersTimeout))
  const server = createServer({
    requestTimeout: 0,
    headersTimeout,
    connectionsCheckingInterval: Math.max(100, Math.min(headersTimeout / 4, 5_000))
  })
  server.maxConnections = config.maxConnections
  const connections = Connections.track(server, {
    maxConnectionsPerAddress: config.maxConnectionsPerAddress,
    // Half the slots at most: Node drops a connection past maxConnections before anyone sees
    // it, so the unproven must leave room for the new ones that evict them.
    maxUnproven: Math.max(1, Math.min(config.maxUnproven, Math.floor(config.maxConnections / 2))),
    maxUnprovenPerAddress: config.maxUnprovenPerAddress,
    // Past Node's own deadline for the headers, so that a slow request still gets its 408.
    unprovenTimeoutMs: 2 * headersTimeout
  })
  return { server, connections }
}

/**
 * The token of callers other than the owner: `SHARDHUB_TOKEN`, else the home's token file.
 */
const tokenOf = (config: GatewayConfig, home: string) =>
  Option.match(config.token, {
    onSome: (token) => Effect.succeed({ token, file: undefined }),
    onNone: () =>
      Effect.try({
        try: () => ({ token: Redacted.make(GatewayFile.ensureToken(home)), file: GatewayFile.tokenFile(home) }),
        catch: (error) => new GatewayTokenError({ message: `the gateway's token: ${error instanceof Error ? error.message : String(error)}` })
      })
  })

/**
 * The gateway's token could not be read or made.
 *
 * @since 0.8.0
 */
export class GatewayTokenError extends Schema.TaggedError<GatewayTokenError>()("GatewayTokenError", {
  message: Schema.String
}) {}

/**
 * The gateway on `config.host:config.port`, on the clients of a cluster participant.
 *
 * @since 0.4.0
 */
export const layer = (config: GatewayConfig) =>
  Layer.unwrap(Effect.gen(function*() {
    const home = Home.homeOf(process.env)
    const exposed = Home.prepare(home)
    if (exposed !== undefined) yield* Console.error(`warning          ${exposed}`)
    const { token, file } = yield* tokenOf(config, home)
    const { server, connections } = boundedServer(config)
    const owners = new Set([0, process.getuid?.() ?? 0])
    const { verify } = yield* Security
    const announce = Layer.effectDiscard(Effect.gen(function*() {
      const server = yield* HttpServer.HttpServer
      const port = "port" in server.address ? server.address.port : config.port
      yield* Console.log(`gateway          http://${config.host}:${port}/api/v1 (dashboard /, docs /api/v1/docs, metrics /metrics)`)
      if (!isLoopback(config.host)) {
        yield* Console.log(
          `                 other machines and users send Authorization: Bearer <token> (${file === undefined ? "SHARDHUB_TOKEN" : `the token in ${file}`})`
        )
      }
      // The CLI of this machine asks it instead of joining the cluster (GatewayFile.ts).
      yield* Effect.acquireRelease(
        Effect.sync(() => GatewayFile.write(home, { url: `http://${localHost(config.host)}:${port}`, pid: process.pid, cluster: GatewayFile.cluster(process.env) })).pipe(
          Effect.catchDefect((error) => Effect.logWarning(`could not write ${home}/gateway.json: ${String(error)}`))
        ),
        () => Effect.sync(() => GatewayFile.remove(home, process.pid)).pipe(Effect.ignore)
      )
    }))
    return Layer.mergeAll(
      HttpRouter.serve(routes(config, { token, verify, owners, connections }), { disableLogger: true, disableListenLog: true, routerConfig: { maxParamLength } }),
      announce
    ).pipe(
      Layer.provide(NodeHttpServer.layer(() => server, { port: config.port, host: config.host })),
      Layer.provide(HubFeed.loggerLayer),
      Layer.provide(HubFeed.layer)
    )
  }))
