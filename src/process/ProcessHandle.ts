/**
 * One process of the ProcessManager, with every operation bound to it: what a caller holds
 * after `spawn` (or `get`).
 *
 * @since 0.8.0
 */
import type { Readable, Writable } from "node:stream"
import { Duration, Effect, type Option, type Scope, type Sink, type Stream } from "effect"
import type { LogLine, LogsQuery } from "./LogStore.ts"
import type * as Managed from "./ManagedProcess.ts"
import type { KillError, LogsError, NotReady, StdinError, WriteMessageError } from "./ProcessErrors.ts"
import type { ProcessInfo, ProcessStats, Status, Terminal } from "./ProcessStatus.ts"
import type * as Stdio from "./Stdio.ts"

/**
 * @since 0.2.0
 */
export interface ProcessHandle {
  readonly id: string
  readonly info: Effect.Effect<ProcessInfo>
  readonly ready: Effect.Effect<void, NotReady>
  readonly wait: Effect.Effect<Terminal>
  /** The status now, then every status it moves to, ending after the terminal one. */
  readonly changes: Stream.Stream<Status>
  readonly terminate: (timeout: Duration.Input) => Effect.Effect<Terminal, KillError>
  readonly kill: Effect.Effect<Terminal, KillError>
  readonly send: (message: unknown) => Effect.Effect<void, WriteMessageError>
  /** Subscribes now, for the scope; the stream yields every message from then on. */
  readonly messages: Effect.Effect<Stream.Stream<Stdio.ChannelEvent>, never, Scope.Scope>
  readonly stdout: (options?: OutputOptions) => Stream.Stream<Uint8Array>
  readonly stderr: (options?: OutputOptions) => Stream.Stream<Uint8Array>
  readonly stdin: (options?: StdinOptions) => Sink.Sink<void, Uint8Array, never, StdinError>
  /** The data output (fd 5) of a process spawned with `dataChannels`. */
  readonly output: (options?: OutputOptions) => Stream.Stream<Uint8Array>
  /**
   * Pumps a Node readable (a socket) into `stdin` or the data `input` without a fiber per
   * chunk, `header` first; closes the input when the readable ends, unless `end` is false.
   * Succeeds once every byte was handed to the pipe; a broken readable fails with `onError`.
   */
  readonly pipeInput: <E>(
    name: Stdio.Input,
    readable: Readable,
    options: StdinOptions & Stdio.PipeInputOptions<E>
  ) => Effect.Effect<void, StdinError | E>
  /**
   * The bytes `stdout`, `stderr` or `output` would stream, written straight into a Node
   * writable (a socket) with its backpressure, without a fiber per chunk: how a data-port
   * session keeps up with the pipe. Succeeds when the output ended (or the writable closed);
   * `written` hears each chunk's size. The writable is not ended.
   */
  readonly pipeOutput: (
    name: Stdio.Output,
    writable: Writable,
    options?: OutputOptions & { readonly written?: (bytes: number) => void }
  ) => Effect.Effect<void>
  /** The data input (fd 4) of a process spawned with `dataChannels`. */
  readonly input: (options?: StdinOptions) => Sink.Sink<void, Uint8Array, never, StdinError>
  readonly logs: (query?: LogsQuery) => Stream.Stream<LogLine, LogsError>
  readonly stats: Effect.Effect<Option.Option<ProcessStats>>
  /**
   * The live process's pid and the loopback port of its own listener (a spec with `listener`),
   * where it can take a data connection itself.
   */
  readonly listener: Effect.Effect<Option.Option<{ readonly pid: number; readonly port: number }>>
}

/**
 * `replay` (default true): start with the retained recent output — everything since the start
 * while less than `outputRetainBytes` was written — then continue live.
 *
 * @since 0.2.0
 */
export interface OutputOptions {
  readonly replay?: boolean
}

/**
 * `end` (default true): close the child's stdin when the stream ends.
 *
 * @since 0.2.0
 */
export interface StdinOptions {
  readonly end?: boolean
}

/**
 * The handle of `managed`, its stats read through `stats` (the manager's sampler).
 *
 * @since 0.8.0
 */
export const of = (managed: Managed.ManagedProcess, stats: Effect.Effect<Option.Option<ProcessStats>>): ProcessHandle => ({
  id: managed.id,
  info: Effect.sync(managed.info),
  ready: managed.ready,
  wait: managed.wait,
  changes: managed.changes,
  terminate: (timeout) => managed.terminate(Duration.toMillis(Duration.fromInputUnsafe(timeout))),
  kill: managed.kill,
  send: managed.send,
  messages: managed.messages,
  stdout: (options) => managed.stdout(options?.replay ?? true),
  stderr: (options) => managed.stderr(options?.replay ?? true),
  stdin: (options) => managed.stdin({ end: options?.end ?? true }),
  output: (options) => managed.output(options?.replay ?? true),
  pipeInput: (name, readable, options) =>
    managed.pipeInput(name, readable, { ...options, end: options.end ?? true }),
  pipeOutput: (name, writable, options) =>
    managed.pipeOutput(name, options?.replay ?? true, writable, options?.written ?? (() => {})),
  input: (options) => managed.input({ end: options?.end ?? true }),
  logs: (query) => managed.logs(query ?? {}),
  stats,
  listener: Effect.sync(managed.listener)
})
