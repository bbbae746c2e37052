/**
 * A managed process's streams across all of its runs: stdout, stderr and the data output fanned
 * out to readers (with replay), lines into its log, the message channel decoded into events and
 * control messages, and sinks into stdin and the data input of the live run.
 *
 * Back-pressure: an output pipe is paused while anyone holds it — a reader that is behind (the
 * fan-out) or the log's disk writer — and resumed when nobody does.
 *
 * @since 0.6.0
 */
import type { Readable, Writable } from "node:stream"
import { Effect, Schema, type Scope, Sink, Stream } from "effect"
import * as Control from "./Control.ts"
import * as Fanout from "./Fanout.ts"
import { codec } from "./Framing.ts"
import type { Run } from "./Launcher.ts"
import { makeLineAssembler } from "./Lines.ts"
import * as LogStore from "./LogStore.ts"
import { StdinError, WriteMessageError } from "./ProcessErrors.ts"
import type { ResolvedSpec } from "./ProcessSpec.ts"

/**
 * What arrives on the message channel: a message, a gap of `count` messages this subscriber was
 * too slow to take, or a frame that could not be decoded.
 *
 * @since 0.2.0
 */
export const ChannelEvent = Schema.Union([
  Schema.TaggedStruct("Message", { value: Schema.Unknown }),
  Schema.TaggedStruct("Lost", { count: Schema.Int }),
  Schema.TaggedStruct("Invalid", { error: Schema.String })
])
/** @since 0.2.0 */
export type ChannelEvent = typeof ChannelEvent.Type

/**
 * Tunables shared by every process of a manager.
 *
 * @since 0.2.0
 */
export interface Settings {
  readonly logRingLines: number
  readonly logRingBytes: number
  readonly logFileBytes: number
  readonly logKeepFiles: number
  readonly maxLineBytes: number
  readonly outputRetainBytes: number
  readonly outputHighWaterBytes: number
  readonly messageBuffer: number
  readonly maxMessageBytes: number
  readonly closeGraceMs: number
  readonly crashLogLines: number
}

const STDIN_BUFFER_BYTES = 1024 * 1024

/**
 * A process's outputs: stdout, stderr, and the data output (fd 5) of a process with data
 * channels.
 *
 * @since 0.7.0
 */
export type Output = "stdout" | "stderr" | "output"

/**
 * A process's inputs: stdin, and the data input (fd 4) of a process with data channels.
 *
 * @since 0.8.0
 */
export type Input = "stdin" | "input"

/**
 * @since 0.6.0
 */
export interface Stdio {
  readonly logs: LogStore.LogStore
  /** Wires a new run's pipes; `ready` hears its ready message. */
  readonly attach: (run: Run, ready: () => void) => void
  /** Ends every reader and the log (the process is over and its last run's output was read). */
  readonly end: () => void
  readonly subscribe: (name: Output, replay: boolean) => Stream.Stream<Uint8Array>
  /** The same bytes as `subscribe`, written straight into `writable` (see `Fanout.Lossless.pipe`). */
  readonly pipeOutput: (name: Output, replay: boolean, writable: Writable, written: (bytes: number) => void) => Effect.Effect<void>
  readonly messages: Effect.Effect<Stream.Stream<ChannelEvent>, never, Scope.Scope>
  /** A sink into the live run's stdin or data input; `end` closes it when the stream ends. */
  readonly writer: (run: () => Run | undefined, name: Input, end: boolean) => Sink.Sink<void, Uint8Array, never, StdinError>
  /**
   * Pipes a Node readable (a socket) into the live run's stdin or data input, with `header`
   * before it, without a fiber per chunk; `end` closes the input when the readable ends.
   * Succeeds once everything was handed to the pipe; fails with `onError` of what broke the
   * readable (a premature close too), or with the input's own error.
   */
  readonly pipeInput: <E>(
    run: () => Run | undefined,
    name: Input,
    source: Readable,
    options: PipeInputOptions<E> & { readonly end: boolean }
  ) => Effect.Effect<void, StdinError | E>
  /** Writes one message to the run's channel, waiting for it to drain when the pipe is full. */
  readonly send: (run: Run | undefined, message: unknown) => Effect.Effect<void, WriteMessageError>
}

/**
 * How {@link Stdio.pipeInput} reads its source.
 *
 * @since 0.8.0
 */
export interface PipeInputOptions<E> {
  /** Written before the source's bytes (a sequence's input header). */
  readonly header?: Uint8Array | undefined
  /** Hears the size of every chunk read. */
  readonly read?: ((bytes: number) => void) | undefined
  readonly onError: (error: unknown) => E
}

/**
 * The streams of process `id`, its log at `logFiles.path` (rotated-out files go to `logFiles.discard`).
 *
 * @since 0.6.0
 */
export const make = (
  id: string,
  spec: ResolvedSpec,
  settings: Settings,
  logFiles: { readonly path: string; readonly discard?: ((path: string) => void) | undefined },
  current: () => Run | undefined
): Stdio => {
  const holders = new Map<Output, Set<"tap" | "log">>()
  const readableOf = (run: Run | undefined, name: Output): Readable | null | undefined =>
    name === "output" ? run?.output : run?.[name]
  const pressure = (name: Output, holder: "tap" | "log") => (paused: boolean) => {
    const held = holders.get(name) ?? new Set()
    holders.set(name, held)
    if (paused) held.add(holder)
    else held.delete(holder)
    const readable = readableOf(current(), name)
    if (readable === null || readable === undefined) return
    if (held.size > 0) readable.pause()
    else readable.resume()
  }
  const logs = LogStore.make({
    id,
    path: logFiles.path,
    discard: logFiles.discard,
    ringLines: settings.logRingLines,
    ringBytes: settings.logRingBytes,
    fileBytes: settings.logFileBytes,
    keepFiles: settings.logKeepFiles,
    resume: spec.continueLog,
    pressure: (paused) => {
      pressure("stdout", "log")(paused)
      pressure("stderr", "log")(paused)
    }
  })
  const tap = (name: Output) =>
    Fanout.lossless({
      retainBytes: settings.outputRetainBytes,
      highWaterBytes: settings.outputHighWaterBytes,
      pressure: pressure(name, "tap")
    })
  const taps: Record<Output, Fanout.Lossless> = { stdout: tap("stdout"), stderr: tap("stderr"), output: tap("output") }
  const messageHub = Fanout.lossy<ChannelEvent>({
    capacity: settings.messageBuffer,
    lost: (count) => ({ _tag: "Lost", count })
  })
  const frames = spec.messages === undefined ? undefined : codec(spec.messages)

  const wireOutput = (run: Run, name: "stdout" | "stderr") => {
    const readable = run[name]
    if (!spec.log[name]) {
      readable.on("data", taps[name].publish)
      return
    }
    const lines = makeLineAssembler(settings.maxLineBytes)
    readable.on("data", (chunk: Buffer) => {
      logs.append(name, lines.push(chunk), Date.now())
      taps[name].publish(chunk)
    })
    readable.on("end", () => logs.append(name, lines.flush(), Date.now()))
  }

  const logLine = (message: Control.Log) => {
    const level = (message.level ?? "info").slice(0, 16)
    const text = typeof message.text === "string" ? message.text : JSON.stringify(message.text ?? null)
    logs.append("log", text.split("\n").map((line) => `${level} ${line}`.slice(0, settings.maxLineBytes)), Date.now())
  }

  const wireChannel = (run: Run, ready: () => void) => {
    const channel = run.channel!
    const decoder = frames!.decoder(settings.maxMessageBytes)
    channel.on("data", (chunk: Buffer) => {
      const decoded = decoder.push(chunk)
      for (const value of decoded.messages) {
        const control = Control.fromChild(value)
        // `"ready"` is what Node's `process.send("ready")` writes (PM2's `wait_ready`).
        if (control?.$shardhub === "ready" || value === "ready") ready()
        else if (control?.$shardhub === "log") logLine(control)
        else messageHub.publish({ _tag: "Message", value })
      }
      for (const error of decoded.errors) messageHub.publish({ _tag: "Invalid", error })
      if (decoded.fatal) channel.destroy()
    })
  }

  const closed = (name: string) => new StdinError({ id, reason: "Closed", message: `the process closed its ${name}` })
  /** Writes a batch, waiting for 'drain' only when more than STDIN_BUFFER_BYTES are queued
   * (a pipe's own high-water mark is 16 KiB, which would mean one wait per chunk). */
  const writeAll = (stdin: Writable, name: string) => (chunks: ReadonlyArray<Uint8Array>) =>
    Effect.callback<void, StdinError>((resume) => {
      let next = 0
      const gone = () => {
        stdin.off("drain", more)
        resume(Effect.fail(closed(name)))
      }
      const more = () => {
        if (stdin.destroyed || stdin.writableEnded) return gone()
        while (next < chunks.length) {
          stdin.write(chunks[next++]!)
          if (stdin.writableLength > STDIN_BUFFER_BYTES) {
            stdin.once("drain", more)
            return
          }
        }
        stdin.off("close", gone)
        resume(Effect.void)
      }
      stdin.once("close", gone)
      more()
    })

  /** The live run's stdin or data input, or why there is none. */
  const liveInput = (run: () => Run | undefined, name: Input) => {
    const live = run()
    const stdin = live?.exit === undefined ? (name === "stdin" ? live?.stdin : live?.input) : undefined
    return stdin === undefined || stdin === null
      ? Effect.fail(new StdinError({ id, reason: "NotRunning", message: "the process is not running" }))
      : Effect.succeed(stdin)
  }

  const pipeInto = <E>(stdin: Writable, name: string, source: Readable, options: PipeInputOptions<E> & { readonly end: boolean }) =>
    Effect.callback<void, StdinError | E>((resume) => {
      let done = false
      const finish = (exit: Effect.Effect<void, StdinError | E>) => {
        if (done) return
        done = true
        source.off("data", onData)
        source.off("end", onEnd)
        source.off("error", onSourceError)
        source.off("close", onSourceClose)
        // What was not taken stays unread: the writer learns it from the backpressure.
        source.pause()
        stdin.off("drain", onDrain)
        stdin.off("close", onClosed)
        resume(exit)
      }
      const onData = (chunk: Buffer) => {
        options.read?.(chunk.length)
        stdin.write(chunk)
        // Like STDIN_BUFFER_BYTES in writeAll: a pipe's own high-water mark would pause per chunk.
        if (stdin.writableLength > STDIN_BUFFER_BYTES) source.pause()
      }
      const onDrain = () => source.resume()
      const onEnd = () => {
        if (options.end && !stdin.writableEnded) stdin.end()
        finish(Effect.void)
      }
      const onSourceError = (error: unknown) => finish(Effect.fail(options.onError(error)))
      const onSourceClose = () => finish(Effect.fail(options.onError(new Error("closed before its end"))))
      const onClosed = () => finish(Effect.fail(closed(name)))
      if (stdin.destroyed || stdin.writableEnded) return finish(Effect.fail(closed(name)))
      if (options.header !== undefined) stdin.write(options.header)
      stdin.on("drain", onDrain)
      stdin.once("close", onClosed)
      source.on("end", onEnd)
      source.on("error", onSourceError)
      source.on("close", onSourceClose)
      source.on("data", onData)
      source.resume()
      return Effect.sync(() => finish(Effect.void))
    })

  const sendFailure = (reason: WriteMessageError["reason"], message: string) => Effect.fail(new WriteMessageError({ id, reason, message }))

  return {
    logs,
    attach: (run, ready) => {
      wireOutput(run, "stdout")
      wireOutput(run, "stderr")
      if (run.channel !== undefined) wireChannel(run, ready)
      run.output?.on("data", taps.output.publish)
    },
    end: () => {
      for (const tap of Object.values(taps)) tap.end()
      messageHub.end()
      logs.end()
    },
    subscribe: (name, replay) => taps[name].subscribe(replay),
    pipeOutput: (name, replay, writable, written) => taps[name].pipe(replay, writable, written),
    messages: spec.messages === undefined ? Effect.succeed(Stream.empty) : messageHub.subscribe,
    writer: (run, name, end) =>
      Sink.unwrap(Effect.map(Effect.suspend(() => liveInput(run, name)), (stdin) =>
        Sink.forEachArray(writeAll(stdin, name)).pipe(Sink.mapEffect(() =>
          Effect.sync(() => {
            if (end && !stdin.writableEnded) stdin.end()
          })
        )))),
    pipeInput: (run, name, source, options) =>
      Effect.flatMap(Effect.suspend(() => liveInput(run, name)), (stdin) => pipeInto(stdin, name, source, options)),
    send: (run, message) =>
      Effect.suspend(() => {
        if (frames === undefined) return sendFailure("NoChannel", "the process has no message channel")
        const channel = run?.exit === undefined ? run?.channel : undefined
        if (channel === undefined || channel.destroyed || !channel.writable) {
          return sendFailure("NotRunning", "the process is not running")
        }
        let frame: Buffer
        try {
          frame = frames.encode(message)
        } catch (error) {
          return sendFailure("Encode", `cannot encode the message: ${(error as Error).message}`)
        }
        if (frame.length > settings.maxMessageBytes + 4) {
          return sendFailure("TooLarge", `message of ${frame.length} bytes exceeds the limit of ${settings.maxMessageBytes}`)
        }
        if (channel.write(frame)) return Effect.void
        return Effect.callback<void, WriteMessageError>((resume) => {
          const done = () => {
            channel.off("drain", done)
            channel.off("close", gone)
            resume(Effect.void)
          }
          const gone = () => {
            channel.off("drain", done)
            resume(Effect.fail(new WriteMessageError({ id, reason: "Io", message: "the channel closed" })))
          }
          channel.on("drain", done)
          channel.once("close", gone)
        })
      })
  }
}
