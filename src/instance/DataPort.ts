/**
 * The data port: a plain TCP listener on every runner, beside its cluster socket, that carries
 * the bulk bytes of instance streams (stdin, stdout, …) at pipe speed.
 *
 * Why: Effect's streaming RPC acknowledges every chunk before the next one is sent, which caps
 * a stream at a fraction of what TCP does. Here TCP's own window is the flow control.
 *
 * How a session is set up:
 * 1. A client asks the owning runner, through an ordinary entity RPC, for a stream. The entity
 *    {@link DataPort.offer}s a session here and answers with this port's address and a ticket.
 * 2. The client dials the address and writes the ticket and a newline.
 * 3. The server answers `OK\n` (or `ERR <reason>\n` and closes), and from then on the socket is
 *    the stream, run by the offered session.
 *
 * Tickets are random 128-bit values, usable once, and expire after `ticketTtlMs` (default 30 s),
 * so a stream reaches only what an RPC to the owner allowed. Like the runner port, the data port
 * needs the cluster key ({@link Security}: TLS between machines, the loopback handshake on
 * loopback): a dialer without it is refused at the handshake and never gets to present a
 * ticket, stolen or not. A connection that has not sent its ticket within `ticketTimeoutMs`
 * (default 10 s) is closed.
 *
 * @since 0.3.0
 */
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import { Context, Effect, FiberSet, Layer, Schema } from "effect"
import { streamEnded, streamStarted } from "../base/heap.js"
import { readLine } from "../transport/Handshake.ts"
import { isLoopback, plain, Security } from "../transport/Security.ts"

/**
 * Where a session waits, and the ticket that opens it.
 *
 * @since 0.3.0
 */
export const Ticket = Schema.Struct({
  host: Schema.String,
  port: Schema.Int,
  ticket: Schema.String,
  /** The port is the process's own listener on loopback (see `Direct`), not a data port. */
  direct: Schema.optionalKey(Schema.Boolean)
})
/** @since 0.3.0 */
export type Ticket = typeof Ticket.Type

/**
 * A session: runs with the dialled socket (after `OK` was written); the socket is ended when
 * it ends.
 *
 * @since 0.3.0
 */
export type Session = (socket: Net.Socket) => Effect.Effect<void>

/**
 * @since 0.3.0
 */
export class DataPort extends Context.Service<DataPort, {
  /** Registers a session and returns the ticket a client dials it with. */
  readonly offer: (session: Session) => Effect.Effect<Ticket>
  /**
   * Its clients are on this machine and need no encryption (it listens on loopback without
   * TLS): they may be sent to a process's own listener instead (see `Direct`).
   */
  readonly direct: boolean
}>()("shardhub/DataPort") {}

/**
 * The dial failed, the ticket was refused, or the connection broke.
 *
 * @since 0.3.0
 */
export class DataPortError extends Schema.TaggedError<DataPortError>()("DataPortError", {
  message: Schema.String
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 500
  }
}

/**
 * @since 0.3.0
 */
export interface Config {
  /** The host clients dial (the runner's advertised host). */
  readonly host: string
  /** The interface to listen on (default `host`). */
  readonly listenHost?: string | undefined
  /** The port (default 0: any free port; clients learn it from the ticket). */
  readonly port?: number | undefined
  readonly ticketTtlMs?: number | undefined
  /** How long a connection may take to present its ticket (default 10 s). */
  readonly ticketTimeoutMs?: number | undefined
  /** See {@link DataPort}'s `direct` (default false). */
  readonly direct?: boolean | undefined
}

/** Ends the socket and waits until the client closed too (at most `lingerMs`), so nothing written is lost. */
const close = (socket: Net.Socket, lingerMs = 30_000) =>
  Effect.callback<void>((resume) => {
    if (socket.destroyed) return resume(Effect.void)
    const timer = setTimeout(() => socket.destroy(), lingerMs).unref()
    socket.once("close", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    socket.end()
    return Effect.sync(() => socket.destroy())
  })

/**
 * A data port listening for the surrounding scope.
 *
 * @since 0.3.0
 */
export const make = (config: Config) =>
  Effect.gen(function*() {
    const security = yield* Security
    const ttl = config.ticketTtlMs ?? 30_000
    const ticketTimeout = config.ticketTimeoutMs ?? 10_000
    const sessions = new Map<string, { readonly session: Session; readonly timer: NodeJS.Timeout }>()
    const run = yield* FiberSet.makeRuntime<never, void, never>()
    // Half-open: a client ends its input and still reads the answer.
    const server = security.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on("error", () => {})
      const deadline = setTimeout(() => socket.destroy(), ticketTimeout).unref()
      readLine(socket, (line) => {
        clearTimeout(deadline)
        const entry = line === undefined ? undefined : sessions.get(line)
        if (entry === undefined) {
          socket.end(line === undefined ? "ERR no ticket\n" : "ERR unknown or expired ticket\n")
          return
        }
        sessions.delete(line!)
        clearTimeout(entry.timer)
        socket.write("OK\n")
        run(Effect.acquireUseRelease(
          Effect.sync(streamStarted),
          () => entry.session(socket).pipe(Effect.ensuring(close(socket))),
          () => Effect.sync(streamEnded)
        ))
      })
      socket.resume() // handed over paused
    })
    const port = yield* Effect.callback<number, DataPortError>((resume) => {
      server.once("error", (error) => resume(Effect.fail(new DataPortError({ message: `data port: ${error.message}` }))))
      server.listen(config.port ?? 0, config.listenHost ?? config.host, () => {
        resume(Effect.succeed((server.address() as Net.AddressInfo).port))
      })
    })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const entry of sessions.values()) clearTimeout(entry.timer)
        sessions.clear()
        server.close()
      })
    )
    return DataPort.of({
      direct: config.direct ?? false,
      offer: (session) =>
        Effect.sync(() => {
          const ticket = Crypto.randomBytes(16).toString("hex")
          const timer = setTimeout(() => sessions.delete(ticket), ttl).unref()
          sessions.set(ticket, { session, timer })
          return { host: config.host, port, ticket }
        })
    })
  })

/**
 * @since 0.3.0
 */
export const layer = (config: Config): Layer.Layer<DataPort, DataPortError, Security> =>
  Layer.effect(DataPort, make(config))

/**
 * Closes a connection so that the other side sees it broken (a TCP reset), not ended: an input
 * cut short must not read as the end of its input. A TLS connection has no reset of its own
 * here and is only destroyed.
 *
 * @since 0.9.0
 */
export const abort = (socket: Net.Socket) => {
  if (socket.destroyed) return
  try {
    socket.resetAndDestroy()
  } catch {
    socket.destroy()
  }
}

/**
 * Dials a session: connects, presents the ticket, and returns the socket once the server said
 * `OK` (paused; nothing of the stream has been read yet).
 *
 * @since 0.3.0
 */
export const dial = (ticket: Ticket, security: Security["Service"], options: { readonly timeoutMs?: number } = {}) =>
  Effect.gen(function*() {
    if (ticket.direct === true && !isLoopback(ticket.host)) {
      return yield* new DataPortError({ message: `a process's own port must be on loopback, not ${ticket.host}` })
    }
    const what = ticket.direct ? "the process's own port" : "data port"
    const where = `${what} ${ticket.host}:${ticket.port}`
    // Half-open: the owner may end its side (the output ended) while input is still being written.
    // A process's own port (on loopback) is dialled without the cluster key: the ticket is its proof.
    const socket = yield* (ticket.direct ? plain : security).connect({ host: ticket.host, port: ticket.port, allowHalfOpen: true, timeoutMs: options.timeoutMs }).pipe(
      Effect.mapError((error) => new DataPortError({ message: `${what} ${error.message}` }))
    )
    const timeoutMs = options.timeoutMs ?? 10_000
    return yield* Effect.callback<Net.Socket, DataPortError>((resume) => {
      const fail = (message: string) => {
        clearTimeout(timer)
        socket.destroy()
        resume(Effect.fail(new DataPortError({ message })))
      }
      const timer = setTimeout(() => fail(`${where} did not take the ticket within ${timeoutMs} ms`), timeoutMs)
      socket.write(`${ticket.ticket}\n`)
      readLine(socket, (line) => {
        if (line !== "OK") return fail(line === undefined ? `${where} closed the connection` : line.replace(/^ERR /, ""))
        clearTimeout(timer)
        resume(Effect.succeed(socket))
      })
      socket.resume()
      return Effect.sync(() => {
        clearTimeout(timer)
        socket.destroy()
      })
    })
  })
