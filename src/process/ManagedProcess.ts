/**
 * One managed process: its runs (OS processes, one at a time), its guarded state machine, its
 * output, log and message channel, and its restart policy.
 *
 * Everything here is driven by Node's child-process callbacks and is synchronous, so there are
 * no locks: each callback sees and changes the state atomically. Effects only wait (on
 * deferreds) and never hold anything, so one stuck process cannot block another.
 *
 * Facts and their sources:
 * - `Running` is entered when the OS gave a pid; `Ready` at once or on the child's ready message.
 * - A terminal status is made only in {@link settle}, after `'exit'` was observed, and after
 *   `'close'` (all output read) or a short grace period, whichever comes first — a background
 *   grandchild holding the pipe must not delay the status (seed 003; PROCESS-SUPERVISION §0.5).
 * - When a run's main process exits, what is left of its process group is killed (systemd's
 *   control-group semantics), so a run never leaves anything behind.
 *
 * @since 0.2.0
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import type * as Net from "node:net"
import type { Readable, Writable } from "node:stream"
import * as Path from "node:path"
import { Deferred, Effect, Option, Queue, Schema, type Scope, Sink, Stream } from "effect"
import * as Fanout from "./Fanout.ts"
import { codec } from "./Framing.ts"
import { makeLineAssembler } from "./Lines.ts"
import * as LogStore from "./LogStore.ts"
import { KillError, type LogsError, NotReady, StdinError, WriteMessageError } from "./ProcessErrors.ts"
import type { Identity } from "./Confinement.ts"
import { ENV, type ResolvedSpec, withheld } from "./ProcessSpec.ts"
import { isFailure, isTerminal, type ProcessInfo, type ProcessStats, type Status, type Terminal } from "./ProcessStatus.ts"
import { cpuPercent, type GroupUsage } from "./ProcStats.ts"
import type { Supervisor } from "./Supervisor.ts"

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

interface Run {
  readonly child: ChildProcess.ChildProcess
  readonly pid: number
  readonly startedAt: number
  readonly channel: Net.Socket | undefined
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
  closed: boolean
  settled: boolean
  /** Set when the manager ended the run for a reason of its own. */
  failure: { reason: "MemoryLimitExceeded" | "ReadyTimeout"; message: string } | undefined
  stopRequested: boolean
  killTimer: ReturnType<typeof setTimeout> | undefined
  killDeadline: number
  readyTimer: ReturnType<typeof setTimeout> | undefined
  usage: { ticks: number; at: number } | undefined
  stats: ProcessStats | undefined
}

/**
 * A process managed by a ProcessManager.
 *
 * @since 0.2.0
 */
export interface ManagedProcess {
  readonly id: string
  readonly spec: ResolvedSpec
  /** Starts the first run; `onFirstSpawn` learns whether the OS accepted it. */
  readonly start: () => void
  readonly info: () => ProcessInfo
  readonly isFinal: () => boolean
  /** The live process group, if a run is alive. */
  readonly liveGroup: () => number | undefined
  readonly ready: Effect.Effect<void, NotReady>
  readonly wait: Effect.Effect<Terminal>
  /** The status now, then every status it moves to, ending after the terminal one. */
  readonly changes: Stream.Stream<Status>
  readonly terminate: (timeoutMs: number) => Effect.Effect<Terminal, KillError>
  readonly kill: Effect.Effect<Terminal, KillError>
  readonly send: (message: unknown) => Effect.Effect<void, WriteMessageError>
  /** Subscribes now (for the scope); the stream yields what arrives from then on. */
  readonly messages: Effect.Effect<Stream.Stream<ChannelEvent>, never, Scope.Scope>
  readonly stdout: (replay: boolean) => Stream.Stream<Uint8Array>
  readonly stderr: (replay: boolean) => Stream.Stream<Uint8Array>
  readonly stdin: (options: { readonly end: boolean }) => Sink.Sink<void, Uint8Array, never, StdinError>
  /** The data output (fd 5) of a process with data channels; empty otherwise. */
  readonly output: (replay: boolean) => Stream.Stream<Uint8Array>
  /** Writes the data input (fd 4) of a process with data channels. */
  readonly input: (options: { readonly end: boolean }) => Sink.Sink<void, Uint8Array, never, StdinError>
  readonly logs: (query: LogStore.LogsQuery) => Stream.Stream<LogStore.LogLine, LogsError>
  readonly stats: () => Option.Option<ProcessStats>
  /** Feeds a `/proc` sample; kills the run when it is over its memory limit. */
  readonly sample: (usage: GroupUsage | undefined, at: number, refreshStats: boolean) => void
  /** Deletes the log files unless `keepLogs` (and the data directory unless it is kept). */
  readonly remove: (keepLogs?: boolean) => void
}

/**
 * What a first spawn attempt reports.
 *
 * @since 0.2.0
 */
export type FirstSpawn = { readonly _tag: "Spawned" } | { readonly _tag: "Failed"; readonly error: NodeJS.ErrnoException }

const READY = "ready"
const LOG = "log"
const STDIN_BUFFER_BYTES = 1024 * 1024
const INPUT_FD = 4
const OUTPUT_FD = 5
const stdioOf = (child: ChildProcess.ChildProcess | undefined, fd: number) =>
  (child?.stdio as ReadonlyArray<Readable | Writable | null | undefined> | undefined)?.[fd] ?? undefined
/**
 * Whether a channel message is the control message `{"$shardhub": kind, …}`.
 *
 * @since 0.4.0
 */
export const isControl = (value: unknown, kind: string): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && (value as Record<string, unknown>)["$shardhub"] === kind

const groupKill = (pgid: number, signal: NodeJS.Signals): string | undefined => {
  try {
    process.kill(-pgid, signal)
    return undefined
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return code === "ESRCH" ? undefined : `cannot send ${signal} to process group ${pgid}: ${code}`
  }
}

/**
 * Creates a managed process; `start` begins its first run.
 *
 * @since 0.2.0
 */
export const make = (options: {
  readonly id: string
  readonly spec: ResolvedSpec
  /** Resolved executable, argv, env and cwd. */
  readonly file: string
  readonly argv: ReadonlyArray<string>
  readonly env: Record<string, string>
  /** The user and group to run as, when not the runner's own. */
  readonly identity: Identity | undefined
  readonly dataDir: string
  readonly logPath: string
  readonly settings: Settings
  readonly supervisor: Supervisor
  readonly onFirstSpawn: (result: FirstSpawn) => void
  /** Says loudly what should never happen (a refused status transition is a bug). */
  readonly reportBug: (message: string) => void
}): ManagedProcess => {
  const { id, settings, spec, supervisor } = options
  const createdAt = Date.now()
  let status: Status = { _tag: "Starting" }
  let run: Run | undefined
  let lastRun: Run | undefined
  let restarts = 0
  const restartTimes: Array<number> = []
  let backoffMs = spec.restart.backoffMs
  let restartTimer: ReturnType<typeof setTimeout> | undefined
  let wanted: "run" | "stop" = "run"
  let final: Terminal | undefined
  let endedAt: number | undefined
  let firstSpawnReported = false
  const finalDeferred = Deferred.makeUnsafe<Terminal>()
  const readyDeferred = Deferred.makeUnsafe<void, NotReady>()

  // An output stream is paused while anyone holds it: its readers (the tap) or the log's disk.
  const holders = new Map<"stdout" | "stderr" | typeof OUTPUT_FD, Set<"tap" | "log">>()
  const pressure = (stream: "stdout" | "stderr" | typeof OUTPUT_FD, holder: "tap" | "log") => (paused: boolean) => {
    const held = holders.get(stream) ?? new Set()
    holders.set(stream, held)
    if (paused) held.add(holder)
    else held.delete(holder)
    const readable = typeof stream === "number" ? stdioOf(run?.child, stream) as Readable | undefined : run?.child[stream]
    if (readable === null || readable === undefined) return
    if (held.size > 0) readable.pause()
    else readable.resume()
  }
  const logs = LogStore.make({
    id,
    path: options.logPath,
    ringLines: settings.logRingLines,
    ringBytes: settings.logRingBytes,
    fileBytes: settings.logFileBytes,
    keepFiles: settings.logKeepFiles,
    pressure: (paused) => {
      pressure("stdout", "log")(paused)
      pressure("stderr", "log")(paused)
    }
  })
  const stdoutTap = Fanout.lossless({
    retainBytes: settings.outputRetainBytes,
    highWaterBytes: settings.outputHighWaterBytes,
    pressure: pressure("stdout", "tap")
  })
  const stderrTap = Fanout.lossless({
    retainBytes: settings.outputRetainBytes,
    highWaterBytes: settings.outputHighWaterBytes,
    pressure: pressure("stderr", "tap")
  })
  const outputTap = Fanout.lossless({
    retainBytes: settings.outputRetainBytes,
    highWaterBytes: settings.outputHighWaterBytes,
    pressure: pressure(OUTPUT_FD, "tap")
  })
  const messageHub = Fanout.lossy<ChannelEvent>({
    capacity: settings.messageBuffer,
    lost: (count) => ({ _tag: "Lost", count })
  })

  // Guarded transitions: nothing leaves a terminal status; a pid is only entered once per run.
  // Callers check the races they expect (a second finalize, readiness while stopping) first, so
  // a refusal here is a bug and is reported, never swallowed.
  const allowed: Record<Status["_tag"], ReadonlyArray<Status["_tag"]>> = {
    // Backoff: a restart's spawn failed, which the restart policy handles like any other end.
    Starting: ["Running", "Backoff", "Exited", "Killed", "Failed"],
    Running: ["Ready", "Stopping", "Backoff", "Exited", "Killed", "Failed"],
    Ready: ["Stopping", "Backoff", "Exited", "Killed", "Failed"],
    Stopping: ["Backoff", "Exited", "Killed", "Failed"],
    Backoff: ["Starting", "Exited", "Killed", "Failed"],
    Exited: [],
    Killed: [],
    Failed: []
  }
  const watchers = new Set<(status: Status) => void>()
  const transition = (next: Status): boolean => {
    if (!allowed[status._tag].includes(next._tag)) {
      options.reportBug(`process ${id}: refused status transition ${status._tag} → ${next._tag}`)
      return false
    }
    status = next
    for (const watcher of [...watchers]) watcher(next)
    return true
  }
  const changes = Stream.callback<Status>((queue) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const watcher = (next: Status) => {
          Queue.offerUnsafe(queue, next)
          if (isTerminal(next)) Queue.endUnsafe(queue)
        }
        watcher(status)
        watchers.add(watcher)
        return watcher
      }),
      (watcher) => Effect.sync(() => watchers.delete(watcher))
    ))

  const finishOutput = () => {
    if (final === undefined || (lastRun !== undefined && !lastRun.closed)) return
    stdoutTap.end()
    stderrTap.end()
    outputTap.end()
    messageHub.end()
    logs.end()
  }

  /** Most children leave their data directory empty: one rmdir, else a recursive removal. */
  const removeDataDir = () => {
    try {
      Fs.rmdirSync(options.dataDir)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== "ENOENT") Fs.rm(options.dataDir, { recursive: true, force: true }, () => {})
    }
  }

  const finalize = (terminal: Terminal) => {
    if (final !== undefined || !transition(terminal)) return
    final = terminal
    endedAt = Date.now()
    if (restartTimer !== undefined) clearTimeout(restartTimer)
    Deferred.doneUnsafe(finalDeferred, Effect.succeed(terminal))
    Deferred.doneUnsafe(readyDeferred, Effect.fail(new NotReady({ id, status: terminal })))
    if (!spec.keepDataDir) removeDataDir()
    finishOutput()
  }

  /** The terminal status of an ended run; the crash log is kept for runs that did not end as asked. */
  const observed = (current: Run): Terminal => {
    const exit = current.exit!
    const clean = current.failure === undefined && (exit.code === 0 || current.stopRequested)
    const log = clean ? [] : logs.tail(settings.crashLogLines).map((line) => line.text)
    if (current.failure !== undefined) {
      return {
        _tag: "Failed",
        reason: current.failure.reason,
        message: current.failure.message,
        ...(exit.code === null ? {} : { code: exit.code }),
        ...(exit.signal === null ? {} : { signal: exit.signal }),
        crashLog: log
      }
    }
    return exit.code !== null
      ? { _tag: "Exited", code: exit.code, crashLog: log }
      : { _tag: "Killed", signal: exit.signal ?? "unknown", crashLog: log }
  }

  const shouldRestart = (terminal: Terminal) =>
    wanted === "run" &&
    (spec.restart.mode === "always" || (spec.restart.mode === "on-failure" && isFailure(terminal)))

  /** Ends a run (or a failed spawn): restart it per policy, or make its outcome final. */
  const settleOutcome = (terminal: Terminal, uptimeMs: number) => {
    if (!shouldRestart(terminal)) return finalize(terminal)
    const now = Date.now()
    while (restartTimes.length > 0 && restartTimes[0]! <= now - spec.restart.windowMs) restartTimes.shift()
    if (restartTimes.length >= spec.restart.maxRestarts) {
      return finalize({
        _tag: "Failed",
        reason: "RestartLimitReached",
        message: `${restartTimes.length} restarts within ${spec.restart.windowMs} ms; last run ended with ${
          terminal._tag === "Exited"
            ? `code ${terminal.code}`
            : terminal._tag === "Killed"
            ? terminal.signal
            : `${terminal.reason}: ${terminal.message}`
        }`,
        ...(terminal._tag === "Exited" ? { code: terminal.code } : {}),
        ...(terminal._tag === "Killed" ? { signal: terminal.signal } : {}),
        crashLog: terminal.crashLog
      })
    }
    if (uptimeMs >= spec.restart.minUptimeMs) backoffMs = spec.restart.backoffMs
    const delay = backoffMs
    backoffMs = Math.min(spec.restart.backoffMaxMs, Math.max(1, backoffMs) * spec.restart.backoffFactor)
    transition({ _tag: "Backoff", restartAt: now + delay, last: terminal })
    restartTimer = setTimeout(() => {
      restartTimer = undefined
      if (wanted !== "run" || status._tag !== "Backoff") return
      restartTimes.push(Date.now())
      restarts++
      transition({ _tag: "Starting" })
      startRun()
    }, delay)
  }

  const settle = (current: Run) => {
    if (current.settled || current.exit === undefined) return
    current.settled = true
    if (current.killTimer !== undefined) clearTimeout(current.killTimer)
    if (current.readyTimer !== undefined) clearTimeout(current.readyTimer)
    supervisor.unwatch(current.pid)
    if (run === current) run = undefined
    settleOutcome(observed(current), Date.now() - current.startedAt)
  }

  const markReady = (current: Run) => {
    // Readiness that arrives once a stop was asked for is moot.
    if (run !== current || current.exit !== undefined || status._tag !== "Running") return
    if (current.readyTimer !== undefined) clearTimeout(current.readyTimer)
    current.readyTimer = undefined
    if (transition({ _tag: "Ready", pid: current.pid, startedAt: current.startedAt, readyAt: Date.now() })) {
      Deferred.doneUnsafe(readyDeferred, Effect.void)
    }
  }

  const wireOutput = (current: Run, name: "stdout" | "stderr", tap: Fanout.Lossless) => {
    const readable = current.child[name]!
    readable.on("error", () => {})
    if (!spec.log[name]) {
      readable.on("data", tap.publish)
      return
    }
    const lines = makeLineAssembler(settings.maxLineBytes)
    readable.on("data", (chunk: Buffer) => {
      logs.append(name, lines.push(chunk), Date.now())
      tap.publish(chunk)
    })
    readable.on("end", () => logs.append(name, lines.flush(), Date.now()))
  }

  const logLine = (message: { readonly level?: unknown; readonly text?: unknown }) => {
    const level = typeof message.level === "string" ? message.level.slice(0, 16) : "info"
    const text = typeof message.text === "string" ? message.text : JSON.stringify(message.text ?? null)
    logs.append("log", text.split("\n").map((line) => `${level} ${line}`.slice(0, settings.maxLineBytes)), Date.now())
  }

  const wireChannel = (current: Run, channel: Net.Socket) => {
    const decoder = codec(spec.messages!).decoder(settings.maxMessageBytes)
    channel.on("data", (chunk: Buffer) => {
      const decoded = decoder.push(chunk)
      for (const value of decoded.messages) {
        if (isControl(value, READY)) markReady(current)
        else if (isControl(value, LOG)) logLine(value)
        else messageHub.publish({ _tag: "Message", value })
      }
      for (const error of decoded.errors) messageHub.publish({ _tag: "Invalid", error })
      if (decoded.fatal) channel.destroy()
    })
    channel.on("error", () => {})
  }

  const startRun = () => {
    let child: ChildProcess.ChildProcess
    try {
      child = ChildProcess.spawn(options.file, options.argv as Array<string>, {
        argv0: spec.shell ? "sh" : spec.command,
        cwd: spec.cwd,
        env: options.env,
        ...(options.identity === undefined ? {} : { uid: options.identity.uid, gid: options.identity.gid }),
        detached: true,
        stdio: [
          spec.stdin === "pipe" ? "pipe" : "ignore",
          "pipe",
          "pipe",
          ...(spec.messages || spec.dataChannels ? [spec.messages ? "pipe" as const : "ignore" as const] : []),
          ...(spec.dataChannels ? ["pipe" as const, "pipe" as const] : [])
        ]
      })
    } catch (error) {
      return spawnFailed(error as NodeJS.ErrnoException)
    }
    if (child.pid === undefined) {
      child.once("error", (error) => spawnFailed(error))
      return
    }
    const current: Run = {
      child,
      pid: child.pid,
      startedAt: Date.now(),
      channel: spec.messages ? (child.stdio[3] as Net.Socket) : undefined,
      exit: undefined,
      closed: false,
      settled: false,
      failure: undefined,
      stopRequested: false,
      killTimer: undefined,
      killDeadline: Infinity,
      readyTimer: undefined,
      usage: undefined,
      stats: undefined
    }
    run = current
    lastRun = current
    supervisor.watch(current.pid)
    wireOutput(current, "stdout", stdoutTap)
    wireOutput(current, "stderr", stderrTap)
    if (current.channel !== undefined) wireChannel(current, current.channel)
    if (spec.dataChannels) {
      const output = stdioOf(child, OUTPUT_FD) as Readable
      output.on("error", () => {})
      output.on("data", outputTap.publish)
      ;(stdioOf(child, INPUT_FD) as Writable).on("error", () => {})
    }
    child.stdin?.on("error", () => {})
    child.on("error", () => {})
    child.on("exit", (code, signal) => {
      current.exit = { code, signal }
      // Whatever the main process left in its group goes with it.
      groupKill(current.pid, "SIGKILL")
      setTimeout(() => settle(current), settings.closeGraceMs)
    })
    child.on("close", () => {
      current.closed = true
      settle(current)
      finishOutput()
    })
    transition({ _tag: "Running", pid: current.pid, startedAt: current.startedAt })
    if (spec.readiness._tag === "Immediate") {
      markReady(current)
    } else {
      const { timeoutMs } = spec.readiness
      current.readyTimer = setTimeout(() => {
        if (run !== current || status._tag !== "Running") return
        current.failure = { reason: "ReadyTimeout", message: `not ready within ${timeoutMs} ms` }
        groupKill(current.pid, "SIGKILL")
      }, timeoutMs)
    }
    if (!firstSpawnReported) {
      firstSpawnReported = true
      options.onFirstSpawn({ _tag: "Spawned" })
    }
  }

  const spawnFailed = (error: NodeJS.ErrnoException) => {
    const failed: Terminal = { _tag: "Failed", reason: "SpawnFailed", message: spawnFailure(error), crashLog: [] }
    if (!firstSpawnReported) {
      firstSpawnReported = true
      options.onFirstSpawn({ _tag: "Failed", error })
      return finalize(failed)
    }
    settleOutcome(failed, 0)
  }

  /** Node reports a missing working directory as ENOENT of the command: say which it was. */
  const spawnFailure = (error: NodeJS.ErrnoException) => {
    const cwd = Path.resolve(spec.cwd ?? process.cwd())
    return error.code === "ENOENT" && !Fs.statSync(cwd, { throwIfNoEntry: false })?.isDirectory()
      ? `working directory ${cwd} does not exist or is not a directory (${error.message})`
      : error.message
  }

  /** Asks the run to stop; SIGKILLs its group at the earliest deadline any caller asked for. */
  const requestStop = (current: Run, timeoutMs: number): string | undefined => {
    if (current.exit !== undefined) return undefined
    let error: string | undefined
    if (!current.stopRequested) {
      current.stopRequested = true
      transition({ _tag: "Stopping", pid: current.pid, startedAt: current.startedAt })
      if (spec.stopWith === "message" && current.channel !== undefined && !current.channel.destroyed) {
        current.channel.write(codec(spec.messages!).encode({ $shardhub: "stop", timeoutMs }))
      } else {
        error = groupKill(current.pid, spec.stopWith === "message" ? "SIGTERM" : spec.stopWith)
      }
    }
    const deadline = Date.now() + timeoutMs
    if (deadline < current.killDeadline) {
      current.killDeadline = deadline
      if (current.killTimer !== undefined) clearTimeout(current.killTimer)
      current.killTimer = setTimeout(() => {
        if (current.exit === undefined) groupKill(current.pid, "SIGKILL")
      }, Math.max(0, timeoutMs))
    }
    return error
  }

  const stopWanted = () => {
    wanted = "stop"
    if (status._tag === "Backoff") finalize(status.last)
  }

  const waitFinal = Deferred.await(finalDeferred)

  const signalError = (message: string | undefined) =>
    message === undefined ? Effect.void : Effect.fail(new KillError({ id, message }))

  /** A sink into the run's stdin or data input; `end` closes it when the stream ends. */
  const writer = (name: "stdin" | "input", end: boolean): Sink.Sink<void, Uint8Array, never, StdinError> =>
    Sink.unwrap(Effect.suspend(() => {
      const stdin: Writable | null | undefined = run?.exit === undefined
        ? (name === "stdin" ? run?.child.stdin : stdioOf(run?.child, INPUT_FD) as Writable | undefined)
        : undefined
      if (stdin === undefined || stdin === null) {
        return Effect.fail(new StdinError({ id, reason: "NotRunning", message: "the process is not running" }))
      }
      const closed = () => new StdinError({ id, reason: "Closed", message: `the process closed its ${name}` })
      // Writes a batch, waiting for 'drain' only when more than STDIN_BUFFER_BYTES are queued
      // (a pipe's own high-water mark is 16 KiB, which would mean one wait per chunk).
      const writeAll = (chunks: ReadonlyArray<Uint8Array>) =>
        Effect.callback<void, StdinError>((resume) => {
          let next = 0
          const gone = () => {
            stdin.off("drain", more)
            resume(Effect.fail(closed()))
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
      return Effect.succeed(
        Sink.forEachArray(writeAll).pipe(Sink.mapEffect(() =>
          Effect.sync(() => {
            if (end && !stdin.writableEnded) stdin.end()
          })
        ))
      )
    }))

  const outputFor = (tap: Fanout.Lossless) => (replay: boolean) => tap.subscribe(replay)

  return {
    id,
    start: startRun,
    spec,
    info: () => {
      const current = run ?? lastRun
      return {
        id,
        name: spec.name,
        command: spec.command,
        args: [...spec.args],
        ...(current === undefined ? {} : { pid: current.pid, startedAt: current.startedAt }),
        status,
        restarts,
        createdAt,
        ...(endedAt === undefined ? {} : { endedAt }),
        dataDir: options.dataDir
      }
    },
    isFinal: () => final !== undefined,
    changes,
    liveGroup: () => (run !== undefined && run.exit === undefined ? run.pid : undefined),
    ready: Deferred.await(readyDeferred),
    wait: waitFinal,
    terminate: (timeoutMs) =>
      Effect.suspend(() => {
        stopWanted()
        const current = run
        const error = current === undefined ? undefined : requestStop(current, timeoutMs)
        return Effect.andThen(signalError(error), waitFinal)
      }),
    kill: Effect.suspend(() => {
      stopWanted()
      const current = run
      let error: string | undefined
      if (current !== undefined && current.exit === undefined) {
        if (!current.stopRequested) transition({ _tag: "Stopping", pid: current.pid, startedAt: current.startedAt })
        current.stopRequested = true
        error = groupKill(current.pid, "SIGKILL")
      }
      return Effect.andThen(signalError(error), waitFinal)
    }),
    send: (message) =>
      Effect.suspend(() => {
        if (spec.messages === undefined) {
          return Effect.fail(new WriteMessageError({ id, reason: "NoChannel", message: "the process has no message channel" }))
        }
        const channel = run?.exit === undefined ? run?.channel : undefined
        if (channel === undefined || channel.destroyed || !channel.writable) {
          return Effect.fail(new WriteMessageError({ id, reason: "NotRunning", message: "the process is not running" }))
        }
        let frame: Buffer
        try {
          frame = codec(spec.messages).encode(message)
        } catch (error) {
          return Effect.fail(
            new WriteMessageError({ id, reason: "Encode", message: `cannot encode the message: ${(error as Error).message}` })
          )
        }
        if (frame.length > settings.maxMessageBytes + 4) {
          return Effect.fail(
            new WriteMessageError({
              id,
              reason: "TooLarge",
              message: `message of ${frame.length} bytes exceeds the limit of ${settings.maxMessageBytes}`
            })
          )
        }
        if (channel.write(frame)) return Effect.void
        return Effect.callback<void, WriteMessageError>((resume) => {
          const done = () => {
            channel.off("drain", done)
            channel.off("close", closed)
            resume(Effect.void)
          }
          const closed = () => {
            channel.off("drain", done)
            resume(Effect.fail(new WriteMessageError({ id, reason: "Io", message: "the channel closed" })))
          }
          channel.on("drain", done)
          channel.once("close", closed)
        })
      }),
    messages: spec.messages === undefined ? Effect.succeed(Stream.empty) : messageHub.subscribe,
    stdout: outputFor(stdoutTap),
    stderr: outputFor(stderrTap),
    stdin: ({ end }) =>
      spec.stdin === "pipe"
        ? writer("stdin", end)
        : Sink.fail(new StdinError({ id, reason: "NotPiped", message: "the process was started with stdin closed" })),
    output: (replay) => spec.dataChannels ? outputTap.subscribe(replay) : Stream.empty,
    input: ({ end }) =>
      spec.dataChannels
        ? writer("input", end)
        : Sink.fail(new StdinError({ id, reason: "NotPiped", message: "the process was started without data channels" })),

    logs: (query) => logs.query(query),
    stats: () => Option.fromUndefinedOr(run?.stats),
    sample: (usage, at, refreshStats) => {
      const current = run
      if (current === undefined || current.exit !== undefined) return
      if (usage === undefined) return
      if (refreshStats || current.stats === undefined) {
        current.stats = {
          processes: usage.processes,
          cpuPercent: current.usage === undefined ? 0 : cpuPercent(current.usage.ticks, usage.ticks, at - current.usage.at),
          rssBytes: usage.rssBytes,
          sampledAt: at
        }
        current.usage = { ticks: usage.ticks, at }
      }
      if (spec.memoryLimitBytes !== undefined && usage.rssBytes > spec.memoryLimitBytes && current.failure === undefined) {
        current.failure = {
          reason: "MemoryLimitExceeded",
          message: `resident memory ${Math.round(usage.rssBytes / 1048576)} MB exceeded the limit of ${
            Math.round(spec.memoryLimitBytes / 1048576)
          } MB`
        }
        groupKill(current.pid, "SIGKILL")
      }
    },
    remove: (keepLogs = false) => {
      if (keepLogs) logs.end()
      else logs.remove()
      if (!spec.keepDataDir) removeDataDir()
    }
  }
}

/**
 * Where a process' data directory lives.
 *
 * @since 0.2.0
 */
export const dataDirOf = (stateDir: string, id: string) => Path.join(stateDir, "data", id)

/**
 * The environment a child starts with: the runner's own without what is withheld (see
 * `withheld`), the variables the spec passes or sets, and the manager's own.
 *
 * @since 0.2.0
 */
export const childEnv = (spec: ResolvedSpec, id: string, dataDir: string, token: string): Record<string, string> => {
  const env: Record<string, string> = {}
  if (spec.env.inherit) {
    for (const [key, value] of Object.entries(process.env)) {
      if (value !== undefined && !withheld(key)) env[key] = value
    }
  }
  for (const key of spec.env.pass) {
    const value = process.env[key]
    if (value !== undefined) env[key] = value
  }
  for (const key of spec.env.remove) delete env[key]
  Object.assign(env, spec.env.set)
  env[ENV.dataDir] = dataDir
  env[ENV.processId] = id
  env[ENV.supervisor] = token
  if (spec.messages !== undefined) {
    env[ENV.messageFd] = "3"
    env[ENV.messageCodec] = spec.messages
  } else {
    delete env[ENV.messageFd]
    delete env[ENV.messageCodec]
  }
  return env
}
