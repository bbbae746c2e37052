/**
 * One managed process: its runs (OS processes, one at a time, see `Launcher.ts`), its status
 * machine (`StatusMachine.ts`), its restart policy (`RestartPolicy.ts`) and its streams
 * (`Stdio.ts`), put together.
 *
 * Everything here is driven by Node's child-process callbacks and is synchronous, so there are
 * no locks: each callback sees and changes the state atomically. Effects only wait (on
 * deferreds) and never hold anything, so one stuck process cannot block another.
 *
 * - `Running` is entered when the OS gave a pid; `Ready` at once or on the child's ready message.
 * - A terminal status is made only from a settled run (see `Launcher.ts`) or a failed spawn.
 * - A spawn that fails on a restart is an ordinary end of a run: the restart policy backs off
 *   and tries again, or the process ends `Failed` with the reason; `wait`, `terminate` and
 *   `kill` always answer.
 *
 * @since 0.2.0
 */
import * as Fs from "node:fs"
import type { Readable, Writable } from "node:stream"
import { Deferred, Effect, Option, type Scope, Sink, Stream } from "effect"
import type { Identity } from "./Confinement.ts"
import * as Control from "./Control.ts"
import { codec } from "./Framing.ts"
import { requestStop, type Run, spawn } from "./Launcher.ts"
import { groupKill } from "./Spawner.ts"
import type * as LogStore from "./LogStore.ts"
import { KillError, type LogsError, NotReady, StdinError, type WriteMessageError } from "./ProcessErrors.ts"
import * as Checks from "./Checks.ts"
import type { Check, ResolvedSpec } from "./ProcessSpec.ts"
import type { ProcessInfo, ProcessStats, Status, Terminal } from "./ProcessStatus.ts"
import { cpuPercent, type GroupUsage } from "./ProcStats.ts"
import * as RestartPolicy from "./RestartPolicy.ts"
import * as StatusMachine from "./StatusMachine.ts"
import * as Stdio from "./Stdio.ts"
import type { Spawner } from "./Spawner.ts"
import type { Supervisor } from "./Supervisor.ts"

export { type ChannelEvent, type Settings } from "./Stdio.ts"

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
  readonly messages: Effect.Effect<Stream.Stream<Stdio.ChannelEvent>, never, Scope.Scope>
  readonly stdout: (replay: boolean) => Stream.Stream<Uint8Array>
  readonly stderr: (replay: boolean) => Stream.Stream<Uint8Array>
  readonly stdin: (options: { readonly end: boolean }) => Sink.Sink<void, Uint8Array, never, StdinError>
  /** The data output (fd 5) of a process with data channels; empty otherwise. */
  readonly output: (replay: boolean) => Stream.Stream<Uint8Array>
  /** The bytes of `stdout`, `stderr` or `output`, written straight into `writable`. */
  readonly pipeOutput: (name: Stdio.Output, replay: boolean, writable: Writable, written: (bytes: number) => void) => Effect.Effect<void>
  /** Pipes a readable into stdin or the data input (see `Stdio.pipeInput`). */
  readonly pipeInput: <E>(
    name: Stdio.Input,
    source: Readable,
    options: Stdio.PipeInputOptions<E> & { readonly end: boolean }
  ) => Effect.Effect<void, StdinError | E>
  /** Writes the data input (fd 4) of a process with data channels. */
  readonly input: (options: { readonly end: boolean }) => Sink.Sink<void, Uint8Array, never, StdinError>
  readonly logs: (query: LogStore.LogsQuery) => Stream.Stream<LogStore.LogLine, LogsError>
  readonly stats: () => Option.Option<ProcessStats>
  /** The live run's pid and the port of its own listener (`spec.listener`), if it has one. */
  readonly listener: () => Option.Option<{ readonly pid: number; readonly port: number }>
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
  /** Takes a rotated-out log file away (see `LogStoreOptions.discard`). */
  readonly discardLog?: (path: string) => void
  readonly settings: Stdio.Settings
  readonly supervisor: Supervisor
  readonly spawner: Spawner
  readonly onFirstSpawn: (result: FirstSpawn) => void
  /** Says loudly what should never happen (an illegal status transition is a bug). */
  readonly reportBug: (message: string) => void
}): ManagedProcess => {
  const { id, settings, spec, supervisor } = options
  const createdAt = Date.now()
  const status = StatusMachine.make(id, options.reportBug)
  const policy = RestartPolicy.make(spec.restart)
  let run: Run | undefined
  let lastRun: Run | undefined
  let restarts = 0
  let restartTimer: ReturnType<typeof setTimeout> | undefined
  let wanted: "run" | "stop" = "run"
  let final: Terminal | undefined
  let endedAt: number | undefined
  let firstSpawnReported = false
  const finalDeferred = Deferred.makeUnsafe<Terminal>()
  const readyDeferred = Deferred.makeUnsafe<void, NotReady>()
  const stdio = Stdio.make(id, spec, settings, { path: options.logPath, discard: options.discardLog }, () => run)
  const notPiped = (name: Stdio.Input) =>
    new StdinError({
      id,
      reason: "NotPiped",
      message: name === "stdin" ? "the process was started with stdin closed" : "the process was started without data channels"
    })

  /** Readers end once the process is final and its last run's output was all read. */
  const endOutput = () => {
    if (final !== undefined && (lastRun === undefined || lastRun.closed)) stdio.end()
  }

  /**
   * Most children leave their data directory empty: one rmdir, else a recursive removal — both
   * off the event loop (a synchronous rmdir took ~1 ms of it per ended process).
   */
  const removeDataDir = () => {
    Fs.rmdir(options.dataDir, (error) => {
      if (error !== null && error.code !== "ENOENT") Fs.rm(options.dataDir, { recursive: true, force: true }, () => {})
    })
  }

  const finalize = (terminal: Terminal) => {
    if (final !== undefined || !status.ended(terminal)) return
    final = terminal
    endedAt = Date.now()
    if (restartTimer !== undefined) clearTimeout(restartTimer)
    Deferred.doneUnsafe(finalDeferred, Effect.succeed(terminal))
    Deferred.doneUnsafe(readyDeferred, Effect.fail(new NotReady({ id, status: terminal })))
    if (!spec.keepDataDir) removeDataDir()
    endOutput()
  }

  /** The terminal status of an ended run; the crash log is kept for runs that did not end as asked. */
  const observed = (ended: Run): Terminal => {
    const exit = ended.exit!
    const clean = ended.failure === undefined && (exit.code === 0 || ended.stopRequested)
    const crashLog = clean ? [] : stdio.logs.tail(settings.crashLogLines).map((line) => line.text)
    if (ended.failure !== undefined) {
      return {
        _tag: "Failed",
        reason: ended.failure.reason,
        message: ended.failure.message,
        ...(exit.code === null ? {} : { code: exit.code }),
        ...(exit.signal === null ? {} : { signal: exit.signal }),
        crashLog
      }
    }
    return exit.code !== null
      ? { _tag: "Exited", code: exit.code, crashLog }
      : { _tag: "Killed", signal: exit.signal ?? "unknown", crashLog }
  }

  /** Ends a run (or a failed spawn): restart it per policy, or make its outcome final. */
  const runEnded = (terminal: Terminal, uptimeMs: number) => {
    if (wanted !== "run") return finalize(terminal)
    const now = Date.now()
    const decision = policy.next(terminal, uptimeMs, now)
    if (decision._tag === "Final") return finalize(decision.terminal)
    if (!status.backoff(now + decision.delayMs, terminal)) return finalize(terminal)
    restartTimer = setTimeout(() => {
      restartTimer = undefined
      if (wanted !== "run" || !status.restarting()) return
      restarts++
      startRun()
    }, decision.delayMs)
  }

  const markReady = (current: Run) => {
    // Readiness that arrives once a stop was asked for is moot.
    if (!alive(current) || status.current()._tag !== "Running") return
    if (current.readyTimer !== undefined) clearTimeout(current.readyTimer)
    current.readyTimer = undefined
    if (status.ready(Date.now())) Deferred.doneUnsafe(readyDeferred, Effect.void)
    if (spec.liveness !== undefined) watchLiveness(current, spec.liveness)
  }

  /** Whether `current` is still the live run (no exit seen). */
  const alive = (current: Run) => run === current && current.exit === undefined

  const execContext: Checks.ExecContext = { cwd: spec.cwd, env: options.env, identity: options.identity }

  /** Ends `current` for a reason of the manager's own, saying why in its log. */
  const fail = (current: Run, reason: "ReadyTimeout" | "LivenessFailed", message: string) => {
    if (current.failure !== undefined) return
    current.failure = { reason, message }
    stdio.logs.append("log", [`shardhub ${reason}: ${message}`.slice(0, settings.maxLineBytes)], Date.now())
    groupKill(current.pid, "SIGKILL")
  }

  /** Tries the readiness check every `intervalMs` until it passes (the ready timer bounds it). */
  const probeReadiness = (current: Run, check: Check, intervalMs: number, timeoutMs: number) => {
    const tryOnce = () => {
      if (!alive(current) || status.current()._tag !== "Running") return
      void Checks.attempt(check, Math.min(intervalMs * 4, timeoutMs), execContext).then((failure) => {
        if (failure === undefined) markReady(current)
        else if (alive(current) && status.current()._tag === "Running") setTimeout(tryOnce, intervalMs).unref()
      })
    }
    tryOnce()
  }

  /** Checks a ready run every interval; `failures` failed tries in a row end it. */
  const watchLiveness = (current: Run, liveness: NonNullable<ResolvedSpec["liveness"]>) => {
    let failed = 0
    const tick = () => {
      if (!alive(current) || current.stopRequested) return
      void Checks.attempt(liveness.check, liveness.timeoutMs, execContext).then((failure) => {
        if (!alive(current) || current.stopRequested) return
        failed = failure === undefined ? 0 : failed + 1
        if (failed >= liveness.failures) {
          return fail(current, "LivenessFailed", `${Checks.describe(liveness.check)} failed ${failed} times in a row: ${failure}`)
        }
        setTimeout(tick, liveness.intervalMs).unref()
      })
    }
    // Checks never keep a process (a test, a client holding a manager) alive by themselves.
    setTimeout(tick, liveness.intervalMs).unref()
  }

  const startRun = () => {
    spawn({
      spawner: options.spawner,
      spec,
      file: options.file,
      argv: options.argv,
      env: options.env,
      identity: options.identity,
      closeGraceMs: settings.closeGraceMs,
      settled: (ended) => {
        supervisor.unwatch(ended.pid)
        if (run === ended) run = undefined
        runEnded(observed(ended), Date.now() - ended.startedAt)
      },
      closed: endOutput
    }, spawned, spawnFailed)
  }

  const spawned = (current: Run) => {
    run = current
    lastRun = current
    supervisor.watch(current.pid)
    stdio.attach(current, () => markReady(current))
    status.spawned(current.pid, current.startedAt)
    if (wanted !== "run") {
      // A stop or kill asked for while the spawn was under way: this run goes at once.
      status.stopping()
      current.stopRequested = true
      groupKill(current.pid, "SIGKILL")
    } else if (spec.readiness._tag === "Immediate") {
      markReady(current)
    } else {
      const readiness = spec.readiness
      current.readyTimer = setTimeout(() => {
        if (run !== current || status.current()._tag !== "Running") return
        fail(current, "ReadyTimeout", `not ready within ${readiness.timeoutMs} ms`)
      }, readiness.timeoutMs)
      if (readiness._tag === "Check") probeReadiness(current, readiness.check, readiness.intervalMs ?? 250, readiness.timeoutMs)
    }
    if (!firstSpawnReported) {
      firstSpawnReported = true
      options.onFirstSpawn({ _tag: "Spawned" })
    }
  }

  const spawnFailed = (error: NodeJS.ErrnoException, message: string) => {
    const failed: Terminal = { _tag: "Failed", reason: "SpawnFailed", message, crashLog: [] }
    if (!firstSpawnReported) {
      firstSpawnReported = true
      options.onFirstSpawn({ _tag: "Failed", error })
      return finalize(failed)
    }
    runEnded(failed, 0)
  }

  /** No more runs: a process waiting in backoff ends with its last run's outcome. */
  const stopWanted = () => {
    wanted = "stop"
    const now = status.current()
    if (now._tag === "Backoff") finalize(now.last)
  }

  const waitFinal = Deferred.await(finalDeferred)
  const signalError = (message: string | undefined) =>
    message === undefined ? Effect.void : Effect.fail(new KillError({ id, message }))
  const stopping = (current: Run) => {
    if (!current.stopRequested) status.stopping()
  }

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
        status: status.current(),
        restarts,
        createdAt,
        ...(endedAt === undefined ? {} : { endedAt }),
        dataDir: options.dataDir
      }
    },
    isFinal: () => final !== undefined,
    changes: status.changes,
    liveGroup: () => (run !== undefined && run.exit === undefined ? run.pid : undefined),
    ready: Deferred.await(readyDeferred),
    wait: waitFinal,
    terminate: (timeoutMs) =>
      Effect.suspend(() => {
        stopWanted()
        const current = run
        if (current === undefined || current.exit !== undefined) return waitFinal
        stopping(current)
        const error = requestStop(current, timeoutMs, () => {
          if (spec.stopWith === "message" && current.channel !== undefined && !current.channel.destroyed) {
            const stop: Control.ToChild = { $shardhub: "stop", timeoutMs }
            current.channel.write(codec(spec.messages!).encode(stop))
            return undefined
          }
          return groupKill(current.pid, spec.stopWith === "message" ? "SIGTERM" : spec.stopWith)
        })
        return Effect.andThen(signalError(error), waitFinal)
      }),
    kill: Effect.suspend(() => {
      stopWanted()
      const current = run
      let error: string | undefined
      if (current !== undefined && current.exit === undefined) {
        stopping(current)
        current.stopRequested = true
        error = groupKill(current.pid, "SIGKILL")
      }
      return Effect.andThen(signalError(error), waitFinal)
    }),
    send: (message) => stdio.send(run, message),
    messages: stdio.messages,
    stdout: (replay) => stdio.subscribe("stdout", replay),
    stderr: (replay) => stdio.subscribe("stderr", replay),
    stdin: ({ end }) => spec.stdin === "pipe" ? stdio.writer(() => run, "stdin", end) : Sink.fail(notPiped("stdin")),
    output: (replay) => spec.dataChannels ? stdio.subscribe("output", replay) : Stream.empty,
    pipeOutput: (name, replay, writable, written) =>
      name === "output" && !spec.dataChannels ? Effect.void : stdio.pipeOutput(name, replay, writable, written),
    pipeInput: (name, source, options) =>
      (name === "stdin" ? spec.stdin === "pipe" : spec.dataChannels)
        ? stdio.pipeInput(() => run, name, source, options)
        : Effect.fail(notPiped(name)),
    input: ({ end }) => spec.dataChannels ? stdio.writer(() => run, "input", end) : Sink.fail(notPiped("input")),
    logs: (query) => stdio.logs.query(query),
    stats: () => Option.fromUndefinedOr(run?.stats),
    listener: () =>
      run === undefined || run.exit !== undefined || run.listening === undefined
        ? Option.none()
        : Option.some({ pid: run.pid, port: run.listening }),
    sample: (usage, at, refreshStats) => {
      const current = run
      if (current === undefined || current.exit !== undefined || usage === undefined) return
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
      if (keepLogs) stdio.logs.end()
      else stdio.logs.remove()
      if (!spec.keepDataDir) removeDataDir()
    }
  }
}
