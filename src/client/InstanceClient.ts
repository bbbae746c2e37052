/**
 * `InstanceClient`: every operation on an instance, from any participant (a runner or a
 * client-only process), with typed errors and Streams for I/O.
 *
 * Calls go to the `Instance` entity on whichever runner owns it. Effect retries a call whose
 * runner is gone every 100 ms until the shard has a new owner, so every call here has a
 * timeout ({@link CallTimeout}); calls that wait by design (`nextEvent`, `lastEvent`) take their
 * own. Bytes (`output`, `input`, `inout`) go straight to the owner's data port.
 *
 * @since 0.3.0
 */
import * as NodeSink from "@effect/platform-node/NodeSink"
import type * as Stdio from "../process/Stdio.ts"
import * as ReadableBytes from "../transport/ReadableBytes.ts"
import type { AlreadyProcessingMessage, EntityNotAssignedToRunner, MailboxFull, PersistenceError } from "effect/cluster/ClusterError"
import type { Sharding } from "effect/cluster/Sharding"
import { Cause, Context, Duration, Effect, Exit, Fiber, Layer, Option, Schema, type Scope, Stream } from "effect"
import type * as Net from "node:net"
import { finished, type Readable } from "node:stream"
import { Security } from "../transport/Security.ts"
import { abort, DataPortError, dial } from "../instance/DataPort.ts"
import { Instance } from "../instance/Instance.ts"
import { Registry } from "../instance/Registry.ts"
import { InstanceRoutes } from "./Routes.ts"
import type { InstanceNotFound, InvalidSpec, NotRunning, RegistryError, SignalFailed, StartFailed } from "../instance/InstanceErrors.ts"
import type { Health, InstanceEvent, InstanceInfo } from "../instance/InstanceSpec.ts"
import type { LogLine, LogsQuery } from "../process/LogStore.ts"
import type { LogsError } from "../process/ProcessErrors.ts"
import type { ProcessStats } from "../process/ProcessStatus.ts"
import * as InstanceMetrics from "../metrics/InstanceMetrics.ts"

/**
 * A call got no answer in time: its runner is gone and no other runner took the instance
 * over yet, or the cluster is overloaded.
 *
 * @since 0.3.0
 */
export class CallTimeout extends Schema.TaggedError<CallTimeout>()("CallTimeout", {
  id: Schema.String,
  operation: Schema.String,
  timeoutMs: Schema.Number
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 503
  }
  override get message() {
    return `${this.operation} of instance ${this.id} got no answer within ${this.timeoutMs} ms`
  }
}

/**
 * Client settings.
 *
 * @since 0.3.0
 */
export interface Options {
  /** Timeout of a call (default 10 s). A stop gets its own timeout on top. */
  readonly timeoutMs?: number
  /** Timeout of `nextEvent` / `lastEvent` (default 5 minutes). */
  readonly waitTimeoutMs?: number
}

/** A process's outputs (the ProcessManager's `Output`): stdout, stderr, a sequence's data output. @since 0.3.0 */
export type OutputStream = Stdio.Output
/** A process's inputs (the ProcessManager's `Input`): stdin, a sequence's data input. @since 0.3.0 */
export type InputStream = Stdio.Input

/** @since 0.4.0 */
export interface InputFlags {
  readonly stream?: InputStream
  /** Close the process's input when the bytes end (default true). */
  readonly end?: boolean
  /** For a sequence: how its input is decoded (the first input decides). */
  readonly contentType?: string
  /**
   * Let the process take the connection itself, past its runner, where it can: a Node
   * sequence's first input, on a runner on this machine without TLS. Elsewhere it is relayed.
   * Default: yes for a sequence's `input`.
   */
  readonly direct?: boolean
}

/** @since 0.4.0 */
export interface InoutFlags {
  readonly end?: boolean
  readonly replay?: boolean
  readonly contentType?: string
  /**
   * As {@link InputFlags}'s `direct`; while such a connection is open, the process's output goes
   * to it alone (no replay, no other reader sees it).
   */
  readonly direct?: boolean
}

type Client = ReturnType<Effect.Success<typeof Instance.client>>

/**
 * Repeats `call` while its answer is an interruption: the entity was interrupted because its
 * shard moved while the call was in flight (at startup or on a rebalance). Only for calls that
 * are safe to repeat; the caller's own interruption still stops it.
 *
 * @since 0.3.0
 */
export const retryMoved = <A, E, R>(call: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  call.pipe(
    Effect.catchCause((cause): Effect.Effect<A, E, R> =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.andThen(Effect.sleep(Duration.millis(50)), retryMoved(call))
        : Effect.failCause(cause)
    )
  )


/** What every call to an entity may fail with besides its own errors: the cluster moving or busy. */
type EntityError = AlreadyProcessingMessage | EntityNotAssignedToRunner | MailboxFull | PersistenceError

/** What a call about an instance may fail with whatever it asks. */
type CallError = EntityError | InstanceNotFound | RegistryError | CallTimeout

/** What opening one of an instance's byte streams may fail with. */
type OpenError = DataPortError | CallError | NotRunning

/**
 * One instance, by id: its record, health and stats, stop/restart/kill, events, logs, and its
 * bytes (input, output, both on one connection) over its runner's data port.
 *
 * @since 0.8.0
 */
export interface InstanceClientService {
  readonly info: (id: string) => Effect.Effect<InstanceInfo, CallError>
  readonly health: (id: string) => Effect.Effect<Health, CallError>
  readonly stats: (id: string) => Effect.Effect<ProcessStats, CallError | NotRunning>
  /** Stops gracefully: SIGKILL after `timeoutMs` (default 10 s); answers with the final record. */
  readonly stop: (
    id: string,
    stop?: { readonly timeoutMs?: number; readonly canCallKeepalive?: boolean }
  ) => Effect.Effect<InstanceInfo, CallError | SignalFailed>
  /**
   * Restarts: stops the process gracefully (SIGKILL after `timeoutMs`, default 10 s) and starts
   * a new one under the same id (an ended instance is started again); answers once it runs.
   */
  readonly restart: (id: string, restart?: { readonly timeoutMs?: number }) => Effect.Effect<InstanceInfo, CallError | InvalidSpec | StartFailed | SignalFailed>
  readonly kill: (id: string, kill?: { readonly removeImmediately?: boolean }) => Effect.Effect<InstanceInfo, CallError | SignalFailed>
  /** Not repeated when the instance moves during the call: the event may have been delivered. */
  readonly sendEvent: (id: string, name: string, data?: unknown) => Effect.Effect<void, CallError | NotRunning>
  /** The next event of that name (waiting up to `ms`, default 5 minutes). */
  readonly nextEvent: (id: string, name: string, ms?: number) => Effect.Effect<InstanceEvent, CallError | NotRunning>
  /** The last event of that name, or the next one if there was none yet. */
  readonly lastEvent: (id: string, name: string, ms?: number) => Effect.Effect<InstanceEvent, CallError | NotRunning>
  /** Events from now on (only `name`, if given); ends when the process ends. */
  readonly events: (id: string, name?: string) => Stream.Stream<InstanceEvent, EntityError | InstanceNotFound | NotRunning | RegistryError>
  readonly logs: (id: string, query?: LogsQuery) => Stream.Stream<LogLine, LogsError | EntityError | InstanceNotFound | NotRunning | RegistryError>
  /**
   * An output stream: the retained recent output first (unless `replay: false`; everything
   * while less than 1 MiB was written), then live and lossless (a slow reader pauses the
   * process) to the end. To write input and read output without a gap, use `inout`.
   */
  readonly output: (id: string, stream?: OutputStream, flags?: { readonly replay?: boolean }) => Stream.Stream<Uint8Array, OpenError>
  /** `output`, its connection open once this succeeds. */
  readonly openOutput: (
    id: string,
    stream?: OutputStream,
    flags?: { readonly replay?: boolean }
  ) => Effect.Effect<Stream.Stream<Uint8Array, DataPortError>, OpenError>
  /**
   * `openOutput` for bulk bytes: the connection itself, a Node readable that ends when the
   * output ends, read without a Stream chunk (and its fibers and allocations) per read. The
   * caller owns it: destroying it stops the output.
   */
  readonly openOutputReadable: (
    id: string,
    stream?: OutputStream,
    flags?: { readonly replay?: boolean }
  ) => Effect.Effect<Readable, OpenError>
  /**
   * Writes `bytes` to the process's stdin (`input` and `stdin` are the same for a command),
   * then closes it unless `end: false`; succeeds once the process took every byte.
   */
  readonly input: <E, R>(id: string, bytes: Stream.Stream<Uint8Array, E, R>, flags?: InputFlags) => Effect.Effect<void, OpenError | E, R>
  /** `input`, its connection open once this succeeds. */
  readonly openInput: (
    id: string,
    flags?: InputFlags
  ) => Effect.Effect<<E, R>(bytes: Stream.Stream<Uint8Array, E, R>) => Effect.Effect<void, DataPortError | E, R>, OpenError>
  /**
   * `openInput` for bulk bytes: the answer pipes a Node readable into the connection, with
   * Node's own backpressure, and succeeds once the process took every byte. A source that
   * fails or closes before its end fails it, and the process gets no end of input from it.
   */
  readonly openInputReadable: (
    id: string,
    flags?: InputFlags
  ) => Effect.Effect<(source: Readable) => Effect.Effect<void, DataPortError>, OpenError>
  /** Writes `bytes` to the input and streams the output back, on one connection. */
  readonly inout: <E, R>(id: string, bytes: Stream.Stream<Uint8Array, E, R>, flags?: InoutFlags) => Stream.Stream<Uint8Array, OpenError | E, Exclude<R, Scope.Scope>>
  /** `inout`, its connection open once this succeeds. */
  readonly openInout: (
    id: string,
    flags?: InoutFlags
  ) => Effect.Effect<<E, R>(bytes: Stream.Stream<Uint8Array, E, R>) => Stream.Stream<Uint8Array, DataPortError | E, Exclude<R, Scope.Scope>>, OpenError>
}

/**
 * @since 0.3.0
 */
export class InstanceClient extends Context.Service<InstanceClient, InstanceClientService>()("shardhub/InstanceClient") {}

/**
 * @since 0.3.0
 */
export const make = (options: Options = {}) =>
  Effect.gen(function*() {
    const clients = yield* Instance.client
    const routes = yield* InstanceRoutes
    const registry = yield* Registry
    const security = yield* Security
    const timeoutMs = options.timeoutMs ?? 10_000
    const waitTimeoutMs = options.waitTimeoutMs ?? 300_000

    /** `f` on the entity of `id`; a remembered route found stale (the entity does not know the id) is asked again once. */
    const routed = <A, E>(id: string, f: (client: Client) => Effect.Effect<A, E>) =>
      Effect.flatMap(routes.of(id), ({ entityId, remembered }) =>
        f(clients(entityId)).pipe(
          Effect.catchIf((error): error is E => remembered && (error as { readonly _tag?: string })._tag === "InstanceNotFound", (error) => {
            routes.forget(id)
            return Effect.flatMap(routes.of(id), (again) => again.entityId === entityId ? Effect.fail(error) : f(clients(again.entityId)))
          })
        ))
    /** A stream of the entity of `id`. */
    const routedStream = <A, E>(id: string, f: (client: Client) => Stream.Stream<A, E>) =>
      Stream.unwrap(Effect.map(routes.of(id), ({ entityId }) => f(clients(entityId))))
    /**
     * Ends a pending instance (no runner meets its placement, so no entity can answer) in the
     * store; otherwise `f` on its entity.
     */
    const endOrCall = <A, E>(id: string, remove: boolean, f: Effect.Effect<A | InstanceInfo, E>) =>
      Effect.flatMap(routes.of(id), ({ entityId }) =>
        entityId === id ? f : Effect.flatMap(registry.endPending(id, { remove }), Option.match({ onNone: () => f, onSome: Effect.succeed })))

    const callOnce = <A, E>(id: string, operation: string, f: (client: Client) => Effect.Effect<A, E>, ms = timeoutMs) =>
      routed(id, f).pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(ms),
          orElse: () => Effect.fail(new CallTimeout({ id, operation, timeoutMs: ms }))
        })
      )
    const call = <A, E>(id: string, operation: string, f: (client: Client) => Effect.Effect<A, E>, ms = timeoutMs) =>
      callOnce(id, operation, (client) => retryMoved(Effect.suspend(() => f(client))), ms).pipe(InstanceMetrics.timedCall(operation))

    /** Opens a byte stream on the owner's data port. */
    const open = (
      id: string,
      stream: Parameters<Client["Open"]>[0]["stream"],
      flags: { readonly end?: boolean; readonly replay?: boolean; readonly contentType?: string; readonly direct?: boolean }
    ) =>
      call(id, `open ${stream}`, (client) => client.Open({ stream, ...flags })).pipe(
        Effect.flatMap((ticket) => dial(ticket, security, { timeoutMs }))
      )

    const readable = (socket: Net.Socket, closeOnDone = true) =>
      ReadableBytes.fromReadable<DataPortError>({
        evaluate: () => socket,
        onError: (error) => new DataPortError({ message: String((error as Error).message ?? error) }),
        closeOnDone
      })

    /**
     * Writes `bytes`, then ends the connection; one cut short (failed, interrupted) is reset
     * instead (the sink's own ending would destroy it plainly: a close the owner reads as the
     * end of the input).
     */
    const write = <E, R>(socket: Net.Socket, bytes: Stream.Stream<Uint8Array, E, R>) =>
      Stream.run(
        bytes,
        NodeSink.fromWritable<DataPortError, Uint8Array>({
          evaluate: () => socket,
          onError: (error) => new DataPortError({ message: String((error as Error).message ?? error) }),
          endOnDone: false
        })
      ).pipe(Effect.onExit((exit) => Effect.sync(() => Exit.isSuccess(exit) ? socket.end() : abort(socket))))

    /**
     * Opens an output stream: fails here (not in the stream) when the instance is unknown, so a
     * caller can answer before the first byte.
     */
    const openOutput = (id: string, stream: OutputStream = "output", flags: { readonly replay?: boolean } = {}) =>
      Effect.map(open(id, stream, flags), (socket) => readable(socket))

    /** The owner's answer to an input connection: `DONE`, or why not. */
    const answerOf = (text: string) => {
      const line = text.trim()
      return line === "DONE" ? Effect.void : Effect.fail(
        new DataPortError({ message: line.startsWith("ERR ") ? line.slice(4) : `unexpected answer ${JSON.stringify(line)}` })
      )
    }

    /**
     * Opens an input: the answer writes `bytes` and succeeds once the process took every byte.
     * The connection closes when that write ends.
     */
    const openInput = (id: string, flags: InputFlags = {}) => {
      const { stream, ...rest } = flags
      return Effect.map(open(id, stream ?? "input", rest), (socket) =>
        <E, R>(bytes: Stream.Stream<Uint8Array, E, R>) => {
          // The owner answers once it took every byte, or as soon as it cannot take more (the
          // process ended, the instance moved): that answer ends the write.
          const answer = Stream.mkString(Stream.decodeText(readable(socket, false))).pipe(Effect.flatMap(answerOf))
          return Effect.all([write(socket, bytes), answer], { concurrency: 2, discard: true }).pipe(
            Effect.ensuring(Effect.sync(() => socket.destroy()))
          )
        })
    }

    const openInputReadable = (id: string, flags: InputFlags = {}) => {
      const { stream, ...rest } = flags
      return Effect.map(open(id, stream ?? "input", rest), (socket) => (source: Readable) =>
        Effect.callback<void, DataPortError>((resume) => {
          let answer = ""
          let done = false
          const finish = (exit: Effect.Effect<void, DataPortError>, cut = false) => {
            if (done) return
            done = true
            source.unpipe(socket)
            if (cut) abort(socket)
            else socket.destroy()
            resume(exit)
          }
          const broke = (error: unknown) =>
            finish(Effect.fail(new DataPortError({ message: String((error as Error)?.message ?? error) })), true)
          // The owner answers once it took every byte, or as soon as it cannot take more.
          socket.setEncoding("utf8")
          socket.on("data", (text: string) => {
            answer += text
          })
          socket.once("end", () => finish(answerOf(answer)))
          socket.once("error", broke)
          // The dial read its `OK` and paused the socket: a 'data' listener alone stays paused.
          socket.resume()
          // Reset (not ended) when the source breaks or the caller leaves: the process gets no
          // end of input from a truncated source.
          finished(source, { writable: false }, (error) => {
            if (error !== undefined && error !== null) broke(error)
          })
          source.pipe(socket)
          return Effect.sync(() => finish(Effect.void, true))
        }))
    }

    /** Opens an input and output on one connection: the answer writes `bytes` and streams the output. */
    const openInout = (id: string, flags: InoutFlags = {}) =>
      Effect.map(open(id, "inout", flags), (socket) =>
        <E, R>(bytes: Stream.Stream<Uint8Array, E, R>) =>
          Stream.unwrap(Effect.gen(function*() {
            yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
            const writer = yield* Effect.forkScoped(write(socket, bytes))
            // Output ends when the process ended. Input not taken by then is an error of its own,
            // not the socket's: the process exited (or the instance moved) before reading it all.
            const unread = Fiber.join(writer).pipe(
              Effect.timeoutOrElse({
                duration: Duration.seconds(1),
                orElse: () =>
                  Effect.fail(new DataPortError({ message: `the output of ${id} ended before its input was all written` }))
              })
            )
            return Stream.merge(
              readable(socket, false).pipe(Stream.concat(Stream.fromEffectDrain(unread))),
              Stream.fromEffectDrain(Fiber.join(writer))
            )
          })))

    const nextEvent = (id: string, name: string, ms = waitTimeoutMs) =>
      call(id, "nextEvent", (client) => client.NextEvent({ name }), ms)

    return InstanceClient.of({
      info: (id: string) =>
        call(id, "info", (client) => client.Info()),
      health: (id: string) => call(id, "health", (client) => client.GetHealth()),
      stats: (id: string) => call(id, "stats", (client) => client.Stats()),
      /** Stops gracefully: SIGKILL after `timeoutMs` (default 10 s); answers with the final record. */
      stop: (id: string, stop: { readonly timeoutMs?: number; readonly canCallKeepalive?: boolean } = {}) => {
        const stopMs = stop.timeoutMs ?? 10_000
        return endOrCall(id, false, call(
          id,
          "stop",
          (client) => client.Stop({ timeoutMs: stopMs, canCallKeepalive: stop.canCallKeepalive ?? false }),
          stopMs + timeoutMs
        ))
      },
      /**
       * Restarts: stops the process gracefully (SIGKILL after `timeoutMs`, default 10 s) and starts
       * a new one under the same id (an ended instance is started again); answers once it runs.
       */
      restart: (id: string, restart: { readonly timeoutMs?: number } = {}) => {
        const stopMs = restart.timeoutMs ?? 10_000
        return call(id, "restart", (client) => client.Restart({ timeoutMs: stopMs }), stopMs + 2 * timeoutMs)
      },
      kill: (id: string, kill: { readonly removeImmediately?: boolean } = {}) =>
        endOrCall(id, kill.removeImmediately ?? false, call(id, "kill", (client) => client.Kill({ removeImmediately: kill.removeImmediately ?? false }))),
      /** Not repeated when the instance moves during the call: the event may have been delivered. */
      sendEvent: (id: string, name: string, data: unknown = null) =>
        callOnce(id, "sendEvent", (client) => client.SendEvent({ name, data })),
      nextEvent,
      lastEvent: (id: string, name: string, ms = waitTimeoutMs) =>
        call(id, "lastEvent", (client) => client.LastEvent({ name }), ms),
      /** Events from now on (only `name`, if given); ends when the process ends. */
      events: (id: string, name?: string) =>
        routedStream(id, (client) => client.Events(name === undefined ? {} : { name })),
      logs: (id: string, query: LogsQuery = {}) => routedStream(id, (client) => client.Logs({ query })),
      /**
       * An output stream: the retained recent output first (unless `replay: false`; everything
       * while less than 1 MiB was written), then live and lossless (a slow reader pauses the
       * process) to the end. To write input and read output without a gap, use `inout`.
       */
      output: (id: string, stream: OutputStream = "output", flags: { readonly replay?: boolean } = {}) =>
        Stream.unwrap(openOutput(id, stream, flags)),
      openOutput,
      openOutputReadable: (id: string, stream: OutputStream = "output", flags: { readonly replay?: boolean } = {}) =>
        open(id, stream, flags),
      /**
       * Writes `bytes` to the process's stdin (`input` and `stdin` are the same for a command),
       * then closes it unless `end: false`; succeeds once the process took every byte.
       */
      input: <E, R>(id: string, bytes: Stream.Stream<Uint8Array, E, R>, flags: InputFlags = {}) =>
        Effect.flatMap(openInput(id, flags), (send) => send(bytes)),
      openInput,
      openInputReadable,
      /** Writes `bytes` to the input and streams the output back, on one connection. */
      inout: <E, R>(id: string, bytes: Stream.Stream<Uint8Array, E, R>, flags: InoutFlags = {}) =>
        Stream.unwrap(Effect.map(openInout(id, flags), (exchange) => exchange(bytes))),
      openInout
    })
  })


/**
 * @since 0.3.0
 */
export const layer = (options: Options = {}): Layer.Layer<InstanceClient, never, Sharding | Security | Registry | InstanceRoutes> =>
  Layer.effect(InstanceClient, make(options))
