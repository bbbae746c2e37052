/**
 * Data connections past the runner: a client's `input` or `inout` connection taken by the
 * instance's process itself, so that its bytes never cross the runner's event loop.
 *
 * How: a process spawned with `listener` (shardhub's Node in-child runner) holds a TCP socket
 * listening on 127.0.0.1 that the spawner bound before it started (so its port is the
 * process's own: the runner never sends a client to a port a sequence named). For an `Open` that
 * asks for it (`direct`), the runner tells the process a one-time ticket on its message channel
 * (`Control.Connection`) and answers the client with the process's port and that ticket instead
 * of its data port's. The client dials the process, presents the ticket and gets `OK`, as at the
 * data port; the process then reads its input from the connection (and, for `inout`, writes its
 * output to it while it is open), and reports the bytes it moved when it closes
 * (`Control.Bytes`).
 *
 * When: only where the data port itself is on loopback without TLS (so its clients are on this
 * machine, and the connection needs no encryption), for the run's first input (input already
 * relayed into the pipe would come after the connection's), and only when the client asked: while
 * a direct `inout` is open, the output goes to it alone (no replay, no other reader sees it).
 * Anywhere else the data port relays, as before.
 *
 * Who may dial: whoever holds the ticket, which only an RPC to the owner (over the
 * authenticated cluster transport) hands out; it is 128 random bits, usable once, dropped by the
 * process after 30 s. A connection without it is closed by the process within 10 s.
 *
 * @since 0.11.0
 */
import * as Crypto from "node:crypto"
import { Effect, Exit, Option } from "effect"
import type * as Control from "../process/Control.ts"
import type { Ticket } from "./DataPort.ts"
import { headerFor, type Incarnation } from "./Incarnation.ts"
import type { ByteStream } from "./InstanceSpec.ts"

/**
 * A ticket to `run`'s process itself for an `input` or `inout` request, or `undefined` where the
 * data port must relay it.
 *
 * @since 0.11.0
 */
export const offer = (run: Incarnation, pid: number | undefined, request: {
  readonly stream: ByteStream
  readonly end?: boolean | undefined
  readonly contentType?: string | undefined
}): Effect.Effect<Ticket | undefined> =>
  Effect.gen(function*() {
    if (request.stream !== "input" && request.stream !== "inout") return undefined
    const listener = yield* run.handle.listener
    if (Option.isNone(listener) || listener.value.pid !== pid || run.inputHeaderTo === pid) return undefined
    const ticket = Crypto.randomBytes(16).toString("hex")
    const before = run.inputHeaderTo
    const header = headerFor(run, pid, request.contentType ?? "application/octet-stream") ?? new Uint8Array()
    const message: Control.ToChild = {
      $shardhub: "connection",
      ticket,
      kind: request.stream,
      end: request.end ?? true,
      head: Buffer.from(header).toString("base64")
    }
    const sent = yield* Effect.exit(run.handle.send(message))
    if (Exit.isFailure(sent)) {
      run.inputHeaderTo = before
      return undefined
    }
    return { host: "127.0.0.1", port: listener.value.port, ticket, direct: true }
  })
