/**
 * Transport security: every connection to a runner port or a data port is authenticated both
 * ways with a pre-shared cluster key — TLS 1.3 with the key (TLS-PSK) between machines, which
 * also encrypts, and on loopback the cheaper {@link Handshake} (mutual proof of the key, no
 * encryption, which loopback does not need) — so only participants that hold the key get an RPC
 * through or a byte of a stream.
 *
 * **Why a pre-shared key kept in the store.** Whoever can write to the cluster store already
 * controls the cluster (runners run the specs stored there), so the store is the trust root
 * anyway. Keeping the keys in it adds no second secret to hand out: every participant that can
 * reach the store — a runner, the CLI, the gateway, a user's Effect app through
 * `Client.layerFromEnv()` — finds the key itself, on one machine and on many, with no
 * certificates, no CA and no files to copy. TLS 1.3 in its `psk_dhe_ke` mode still does an
 * ECDHE exchange, so a key that leaks later does not decrypt recorded traffic.
 *
 * **Rotation and revocation.** Several keys can be active. A server accepts every active key; a
 * dialer uses the newest key that is older than {@link activationDelay} (so that every
 * participant has loaded it before anyone dials with it), else the oldest. `rotate` adds a key,
 * `retire` removes one: every participant re-reads the keys every `refresh`, and a server then
 * closes the connections that were opened with a retired key.
 *
 * **Refusals.** A connection that does not complete its handshake in `handshakeTimeout` — no
 * TLS, an unknown key, a wrong secret, nothing sent, the loopback handshake from another
 * machine — is closed and logged with the peer's address and the reason (at most a few lines a
 * second; the rest are counted).
 *
 * `SHARDHUB_TRANSPORT=tls` uses TLS on loopback too (and refuses the loopback handshake);
 * `plain` (no authentication) exists only to measure what security costs, and a runner refuses
 * it on a non-loopback address.
 *
 * @since 0.5.0
 */
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { Context, Duration, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SecurityConfig } from "../base/Config.ts"
import * as Handshake from "./Handshake.ts"

/**
 * An active cluster key as read from the store.
 *
 * @since 0.5.0
 */
export interface ClusterKey {
  readonly id: string
  readonly secret: Buffer
  readonly createdAt: Date
  /** Age by the store's clock when it was read. */
  readonly ageMs: number
}

/**
 * Where to dial, and how long the connection and its handshake may take.
 *
 * @since 0.5.0
 */
export interface DialOptions {
  readonly host: string
  readonly port: number
  readonly allowHalfOpen?: boolean | undefined
  readonly timeoutMs?: number | undefined
}

/**
 * A dial failed: no connection, or the handshake did not complete.
 *
 * @since 0.5.0
 */
export class DialError extends Schema.TaggedError<DialError>()("DialError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * @since 0.5.0
 */
export class Security extends Context.Service<Security, {
  readonly mode: "cluster-key" | "plain"
  /**
   * A listening server whose connection handler gets only authenticated sockets (with
   * TCP_NODELAY): the handshake, its deadline and the log line of a refusal happen before
   * `onConnection`.
   */
  readonly createServer: (options: { readonly allowHalfOpen?: boolean }, onConnection: (socket: Net.Socket) => void) => Net.Server
  /** Dials and authenticates; the socket is handed over paused, nothing of the peer's data read. */
  readonly connect: (options: DialOptions) => Effect.Effect<Net.Socket, DialError>
  /**
   * A signature of `message` under the dialers' key (`<key id>.<HMAC-SHA256>`, base64url): a
   * credential any participant can check and none can forge without the cluster key.
   * `undefined` without keys (`plain`).
   */
  readonly sign: (message: string) => string | undefined
  /** Whether `signature` is {@link sign}'s of `message` under an active key. */
  readonly verify: (message: string, signature: string) => boolean
}>()("shardhub/transport/Security") {}

/** The HMAC of `message` under `key`, base64url. */
const mac = (key: ClusterKey, message: string) => Crypto.createHmac("sha256", key.secret).update(message).digest("base64url")

/**
 * How long a new key waits before dialers use it, as a multiple of the refresh interval: every
 * participant has re-read the keys at least twice by then.
 *
 * @since 0.5.0
 */
export const activationDelay = (refresh: Duration.Duration) => Duration.times(refresh, 3)

/** TLS 1.3 only; suites on SHA-256, the hash OpenSSL uses for external PSKs. */
const tlsBase = {
  minVersion: "TLSv1.3",
  maxVersion: "TLSv1.3",
  ciphers: "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"
} as const

const keyLock = 0x5348_4b31 // "SHK1": serialises the creation of the first key

/**
 * The active keys, oldest first; creates the cluster's first key when there is none (one
 * creator wins, under an advisory lock).
 *
 * @since 0.5.0
 */
export const loadKeys = Effect.gen(function*() {
  const sql = yield* SqlClient
  const read = sql<{ id: string; secret: Buffer; created_at: Date; age_ms: number }>`
    SELECT id, secret, created_at, (extract(epoch FROM now() - created_at) * 1000)::float8 AS age_ms
    FROM shardhub_cluster_keys WHERE retired_at IS NULL ORDER BY created_at, id`
  let rows = yield* read
  if (rows.length === 0) {
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT pg_advisory_xact_lock(${keyLock})`
      yield* sql`INSERT INTO shardhub_cluster_keys (id, secret)
        SELECT ${newKeyId()}, ${Crypto.randomBytes(32)}
        WHERE NOT EXISTS (SELECT 1 FROM shardhub_cluster_keys WHERE retired_at IS NULL)`
    }))
    rows = yield* read
  }
  return rows.map((row): ClusterKey => ({
    id: row.id,
    secret: Buffer.from(row.secret),
    createdAt: row.created_at,
    ageMs: row.age_ms
  }))
})

const newKeyId = () => `k-${Crypto.randomBytes(6).toString("hex")}`

/**
 * Adds a new key; dialers switch to it after {@link activationDelay}. Returns its id.
 *
 * @since 0.5.0
 */
export const rotate = Effect.gen(function*() {
  const sql = yield* SqlClient
  const id = newKeyId()
  yield* sql`INSERT INTO shardhub_cluster_keys (id, secret) VALUES (${id}, ${Crypto.randomBytes(32)})`
  return id
})

/**
 * Retires keys: `id` (unless it is the last active one: rotate first), or with
 * `"all-but-newest"` every key but the newest. Servers refuse them (and close the connections
 * opened with them) once they have re-read the keys. Returns the ids retired.
 *
 * @since 0.5.0
 */
export const retire = (which: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = which === "all-but-newest"
      ? yield* sql<{ id: string }>`
        UPDATE shardhub_cluster_keys SET retired_at = now()
        WHERE retired_at IS NULL AND id <> (
          SELECT id FROM shardhub_cluster_keys WHERE retired_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 1
        ) RETURNING id`
      : yield* sql<{ id: string }>`
        UPDATE shardhub_cluster_keys SET retired_at = now()
        WHERE retired_at IS NULL AND id = ${which}
          AND EXISTS (SELECT 1 FROM shardhub_cluster_keys WHERE retired_at IS NULL AND id <> ${which})
        RETURNING id`
    return rows.map((row) => row.id)
  })

/**
 * The key a dialer uses: the newest one past its activation delay, else the oldest.
 *
 * @since 0.5.0
 */
export const dialKey = (keys: ReadonlyArray<ClusterKey>, activationMs: number): ClusterKey | undefined =>
  keys.findLast((key) => key.ageMs >= activationMs) ?? keys[0]

/**
 * Why a TLS handshake failed, in a few words. (A connection that is not TLS at all, or sends
 * nothing, is refused before it reaches TLS: see `accept`.)
 */
const describeRefusal = (error: NodeJS.ErrnoException): string => {
  const code = error.code ?? ""
  if (code === "ERR_SSL_BINDER_DOES_NOT_VERIFY" || /decrypt|bad record mac/i.test(error.message)) {
    return "wrong cluster key"
  }
  if (/no shared cipher|no suitable|unsupported protocol|version too low|psk/i.test(error.message)) {
    return "no cluster key offered (TLS without the cluster's pre-shared key)"
  }
  if (code === "ECONNRESET" || /socket hang up|closed/i.test(error.message)) return "closed during the handshake"
  return `handshake failed (${code || error.message})`
}

/**
 * Logs refusals, at most `perSecond` lines a second; the lines held back are counted in the next one.
 */
const refusalLog = (log: (line: string) => void, perSecond = 5) => {
  let windowStart = 0
  let inWindow = 0
  let held = 0
  return (peer: string, why: string) => {
    const now = Date.now()
    if (now - windowStart >= 1000) {
      windowStart = now
      inWindow = 0
    }
    if (inWindow >= perSecond) {
      held++
      return
    }
    inWindow++
    log(`refused connection from ${peer}: ${why}${held > 0 ? ` (and ${held} more refused, not shown)` : ""}`)
    held = 0
  }
}

const peerOf = (socket: Net.Socket) => `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`

/** Connects a TCP socket (through `create`), resolving on `event`; `ready` may add a handshake. */
const dialWith = (
  options: DialOptions,
  create: () => Net.Socket,
  event: "connect" | "secureConnect",
  ready: (socket: Net.Socket, done: (error: string | undefined) => void) => void = (_, done) => done(undefined)
) =>
  Effect.callback<Net.Socket, DialError>((resume) => {
    const where = `${options.host}:${options.port}`
    const socket = create()
    socket.setNoDelay(true)
    const fail = (message: string, cause?: unknown) => {
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.fail(new DialError({ message: `${where}: ${message}`, cause })))
    }
    const timeoutMs = options.timeoutMs ?? 10_000
    const timer = setTimeout(() => fail(`no connection within ${timeoutMs} ms`), timeoutMs)
    const onError = (error: Error) => fail(error.message, error)
    socket.once("error", onError)
    socket.once(event, () =>
      ready(socket, (error) => {
        if (error !== undefined) return fail(error)
        clearTimeout(timer)
        socket.off("error", onError)
        // Whoever reads the socket learns of a failure from its close; an unheard 'error' must not crash us.
        socket.on("error", () => {})
        socket.pause()
        resume(Effect.succeed(socket))
      }))
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

/**
 * No authentication, for measuring the cost of security only.
 *
 * @since 0.5.0
 */
export const plain: Security["Service"] = Security.of({
  mode: "plain",
  createServer: (options, onConnection) => Net.createServer({ ...options, noDelay: true }, onConnection),
  connect: (options) =>
    dialWith(options, () => Net.connect({ host: options.host, port: options.port, allowHalfOpen: options.allowHalfOpen ?? false }), "connect"),
  sign: () => undefined,
  verify: () => false
})

/**
 * The cluster key from the store (re-read every `config.keyRefresh`), proven with TLS-PSK, or
 * with the loopback handshake where both ends are on loopback (`auto` mode).
 *
 * @since 0.5.0
 */
export const make = Effect.fnUntraced(function*(config: SecurityConfig) {
  const sql = yield* SqlClient
  const services = yield* Effect.context<never>()
  const logWarning = (line: string) => Effect.runForkWith(services)(Effect.logWarning(line))
  const refused = refusalLog(logWarning)
  const activationMs = Duration.toMillis(activationDelay(config.keyRefresh))
  const handshakeTimeout = Duration.toMillis(config.handshakeTimeout)

  let keys = yield* loadKeys.pipe(Effect.provideService(SqlClient, sql), Effect.orDie)
  let byId = new Map(keys.map((key) => [key.id, key]))
  /** Server-side connections by the key they were opened with, to close them when it is retired. */
  const opened = new Map<string, Set<Net.Socket>>()

  const reload = loadKeys.pipe(
    Effect.provideService(SqlClient, sql),
    Effect.tap((fresh) =>
      Effect.sync(() => {
        keys = fresh
        byId = new Map(fresh.map((key) => [key.id, key]))
        for (const [id, sockets] of opened) {
          if (byId.has(id)) continue
          opened.delete(id)
          for (const socket of sockets) socket.destroy()
          if (sockets.size > 0) logWarning(`closed ${sockets.size} connection(s) opened with retired key ${id}`)
        }
      })
    ),
    Effect.catchCause((cause) => Effect.logWarning("could not re-read the cluster keys; keeping the ones loaded", cause))
  )
  // The first reload one interval after the load above, not at once.
  yield* reload.pipe(Effect.delay(config.keyRefresh), Effect.forever, Effect.forkScoped)

  const track = (socket: Net.Socket, keyId: string) => {
    let sockets = opened.get(keyId)
    if (sockets === undefined) opened.set(keyId, sockets = new Set())
    const tracked = sockets
    tracked.add(socket)
    socket.once("close", () => tracked.delete(socket))
  }

  /** Refusals already logged where they were found (an unknown TLS identity). */
  const explained = new WeakSet<Net.Socket>()
  // `pskCallback` works on a server-side TLSSocket as on a tls.Server; Node's types omit it there.
  const tlsServerOptions: Tls.TLSSocketOptions & Pick<Tls.TlsOptions, "pskCallback"> = {
    ...tlsBase,
    isServer: true,
    pskCallback: (socket, identity) => {
      const key = byId.get(identity)
      if (key === undefined) {
        explained.add(socket)
        refused(peerOf(socket), `unknown cluster key '${identity.slice(0, 40).replace(/[^\w.-]/g, "?")}'`)
        return null
      }
      track(socket, key.id)
      return key.secret
    }
  }
  /** Authenticates an accepted connection by its first byte: TLS, or the loopback handshake. */
  const accept = (raw: Net.Socket, onConnection: (socket: Net.Socket) => void) => {
    raw.on("error", () => {})
    const peer = peerOf(raw)
    let settled = false
    const refuse = (why: string) => {
      if (settled) return
      settled = true
      clearTimeout(deadline)
      refused(peer, why)
      raw.destroy()
    }
    const accepted = (socket: Net.Socket) => {
      if (settled) return socket.destroy()
      settled = true
      clearTimeout(deadline)
      onConnection(socket)
    }
    const deadline = setTimeout(() => refuse("no handshake in time"), handshakeTimeout)
    raw.once("data", (first: Buffer) => {
      raw.pause()
      raw.unshift(first)
      if (first[0] === 0x16) {
        const tls = new Tls.TLSSocket(raw, tlsServerOptions)
        tls.on("error", (error: NodeJS.ErrnoException) => {
          if (explained.has(tls)) {
            settled = true
            clearTimeout(deadline)
            raw.destroy()
          } else refuse(describeRefusal(error))
          tls.destroy()
        })
        tls.once("secure", () => accepted(tls))
      } else if (
        first[0] === Handshake.firstByte && config.mode === "auto" && isLoopback(raw.remoteAddress ?? "") &&
        isLoopback(raw.localAddress ?? "")
      ) {
        Handshake.serve(raw, (id) => byId.get(id), (outcome) => {
          if ("refused" in outcome) return refuse(outcome.refused)
          track(raw, outcome.key.id)
          accepted(raw)
        })
      } else {
        refuse(
          first[0] !== Handshake.firstByte
            ? "not TLS (a plaintext client?)"
            : config.mode === "tls"
            ? "the loopback handshake, where TLS is required (SHARDHUB_TRANSPORT=tls)"
            : "the loopback handshake from another machine"
        )
      }
    })
    raw.once("end", () => refuse("closed during the handshake"))
    raw.resume() // accepted paused (pauseOnConnect): nothing is read before the listener above
  }

  return Security.of({
    mode: "cluster-key",
    createServer: (options, onConnection) =>
      Net.createServer({ ...options, noDelay: true, pauseOnConnect: true }, (raw) => accept(raw, onConnection)),
    connect: (options) =>
      connectWithKey(
        options,
        () => dialKey(keys, activationMs),
        config.mode === "auto" && isLoopback(options.host) ? "handshake" : "tls"
      ),
    sign: (message) => {
      const key = dialKey(keys, activationMs)
      return key === undefined ? undefined : `${key.id}.${mac(key, message)}`
    },
    verify: (message, signature) => {
      const dot = signature.indexOf(".")
      const key = dot < 0 ? undefined : byId.get(signature.slice(0, dot))
      if (key === undefined) return false
      const expected = Buffer.from(mac(key, message))
      const given = Buffer.from(signature.slice(dot + 1))
      return given.length === expected.length && Crypto.timingSafeEqual(given, expected)
    }
  })
})

/**
 * Dials `options` and proves `key()` (read at each handshake: a socket that re-dials — Effect's
 * RPC client does — uses the key of now): with TLS-PSK, or the loopback {@link Handshake}.
 *
 * @since 0.5.0
 */
export const connectWithKey = (options: DialOptions, key: () => Handshake.Key | undefined, via: "tls" | "handshake") => {
  const allowHalfOpen = options.allowHalfOpen ?? false
  if (via === "tls") {
    // `allowHalfOpen` reaches the TLSSocket (Node's types omit it from ConnectionOptions).
    const tlsOptions: Tls.ConnectionOptions & { readonly allowHalfOpen: boolean } = {
      host: options.host,
      port: options.port,
      allowHalfOpen,
      ...tlsBase,
      // No certificates: the pre-shared key authenticates the server.
      checkServerIdentity: () => undefined,
      pskCallback: () => {
        const current = key()
        return current === undefined ? null : { identity: current.id, psk: current.secret }
      }
    }
    return dialWith(
      options,
      () => Tls.connect(tlsOptions),
      "secureConnect"
    )
  }
  return dialWith(
    options,
    () => Net.connect({ host: options.host, port: options.port, allowHalfOpen }),
    "connect",
    (socket, done) => {
      const current = key()
      if (current === undefined) return done("no cluster key loaded")
      Handshake.dial(socket, current, options.port, done)
    }
  )
}

/**
 * {@link Security} for a participant on the store: TLS-PSK, or plain when `config.mode` says so.
 *
 * @since 0.5.0
 */
export const layer = (config: SecurityConfig): Layer.Layer<Security, never, SqlClient> =>
  config.mode === "plain" ? Layer.succeed(Security, plain) : Layer.effect(Security, make(config))

/**
 * Whether `host` is a loopback address (or `localhost`).
 *
 * @since 0.5.0
 */
export const isLoopback = (host: string) =>
  host === "localhost" || host === "::1" || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(host)
