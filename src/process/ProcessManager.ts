/**
 * The ProcessManager: runs, watches, talks to, measures, limits and stops OS processes on one
 * machine. It knows nothing of entities or the cluster.
 *
 * Contract (hyperactor's ProcHandle, seed 003):
 * - `ready` and `wait` serve any number of waiters and consume nothing.
 * - `terminate(timeout)` asks politely (a signal to the process group, or an in-band stop
 *   message) and SIGKILLs the group at the deadline; `kill` SIGKILLs the group. Both are
 *   idempotent: concurrent callers coalesce (the earliest deadline wins) and all get the one
 *   terminal status, which is only made from an observed exit.
 * - Every child runs in its own process group; nothing it started outlives it, the manager, or
 *   even a SIGKILL of the manager (see `Supervisor`).
 * - Operations on one process never wait on another.
 *
 * @since 0.2.0
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type { Readable, Writable } from "node:stream"
import { Context, Duration, Effect, Layer, Option, Schedule, Schema, Scope, Sink, Stream } from "effect"
import * as Confinement from "./Confinement.ts"
import * as LogStore from "./LogStore.ts"
import type { LogLine, LogsQuery } from "./LogStore.ts"
import * as ChildEnv from "./ChildEnv.ts"
import * as Managed from "./ManagedProcess.ts"
import {
  KillError,
  LogsError,
  NotReady,
  ProcessNotFound,
  SpawnError,
  StateDirError,
  StdinError,
  StillRunning,
  WriteMessageError
} from "./ProcessErrors.ts"
import { ProcessSpec, resolve } from "./ProcessSpec.ts"
import { isTerminal, type ProcessInfo, type ProcessStats, type Status, type Terminal } from "./ProcessStatus.ts"
import { readGroups } from "./ProcStats.ts"
import * as Spawner from "./Spawner.ts"
import * as Supervisor from "./Supervisor.ts"

/**
 * One process, with every operation bound to its id.
 *
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
  readonly messages: Effect.Effect<Stream.Stream<Managed.ChannelEvent>, never, Scope.Scope>
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
    name: "stdin" | "input",
    readable: Readable,
    options: StdinOptions & {
      readonly header?: Uint8Array | undefined
      readonly read?: (bytes: number) => void
      readonly onError: (error: unknown) => E
    }
  ) => Effect.Effect<void, StdinError | E>
  /**
   * The bytes `stdout`, `stderr` or `output` would stream, written straight into a Node
   * writable (a socket) with its backpressure, without a fiber per chunk: how a data-port
   * session keeps up with the pipe. Succeeds when the output ended (or the writable closed);
   * `written` hears each chunk's size. The writable is not ended.
   */
  readonly pipeOutput: (
    name: "stdout" | "stderr" | "output",
    writable: Writable,
    options?: OutputOptions & { readonly written?: (bytes: number) => void }
  ) => Effect.Effect<void>
  /** The data input (fd 4) of a process spawned with `dataChannels`. */
  readonly input: (options?: StdinOptions) => Sink.Sink<void, Uint8Array, never, StdinError>
  readonly logs: (query?: LogsQuery) => Stream.Stream<LogLine, LogsError>
  readonly stats: Effect.Effect<Option.Option<ProcessStats>>
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
 * @since 0.2.0
 */
export class ProcessManager extends Context.Service<ProcessManager, {
  readonly spawn: (spec: ProcessSpec) => Effect.Effect<ProcessHandle, SpawnError>
  readonly get: (id: string) => Effect.Effect<ProcessHandle, ProcessNotFound>
  readonly list: Effect.Effect<ReadonlyArray<ProcessInfo>>
  readonly info: (id: string) => Effect.Effect<ProcessInfo, ProcessNotFound>
  readonly ready: (id: string) => Effect.Effect<void, ProcessNotFound | NotReady>
  readonly wait: (id: string) => Effect.Effect<Terminal, ProcessNotFound>
  readonly terminate: (id: string, timeout: Duration.Input) => Effect.Effect<Terminal, ProcessNotFound | KillError>
  readonly kill: (id: string) => Effect.Effect<Terminal, ProcessNotFound | KillError>
  readonly send: (id: string, message: unknown) => Effect.Effect<void, ProcessNotFound | WriteMessageError>
  readonly messages: (id: string) => Effect.Effect<Stream.Stream<Managed.ChannelEvent>, ProcessNotFound, Scope.Scope>
  readonly stdout: (id: string, options?: OutputOptions) => Stream.Stream<Uint8Array, ProcessNotFound>
  readonly stderr: (id: string, options?: OutputOptions) => Stream.Stream<Uint8Array, ProcessNotFound>
  readonly stdin: (id: string, options?: StdinOptions) => Sink.Sink<void, Uint8Array, never, ProcessNotFound | StdinError>
  readonly logs: (id: string, query?: LogsQuery) => Stream.Stream<LogLine, ProcessNotFound | LogsError>
  readonly stats: (id: string) => Effect.Effect<Option.Option<ProcessStats>, ProcessNotFound>
  /** Forgets an ended process and deletes its logs. */
  readonly remove: (id: string, options?: { readonly keepLogs?: boolean }) => Effect.Effect<void, ProcessNotFound | StillRunning>
  /**
   * The log named `logName` (see `ProcessSpec.logName`): of its process while the manager has it,
   * else what its files still hold (kept for `logRetentionMs` after their last line).
   */
  readonly pastLogs: (logName: string, query?: LogsQuery) => Stream.Stream<LogLine, LogsError>
  /** Processes a previous incarnation left behind, killed when this manager started. */
  readonly swept: number
  /** The fence over every process (see {@link Fencing}). */
  readonly fencing: Fencing
}>()("shardhub/ProcessManager") {}

/**
 * The fence: a watchdog outside the manager's process (its reaper) that stops (SIGSTOP) every
 * process unless `renew` is called again within the time it gives. Whoever owns the processes'
 * right to run (a runner's shard locks) renews it each time it proved that right, and continues
 * (`thaw`) the processes it still has a right to after a freeze.
 *
 * @since 0.5.0
 */
export interface Fencing {
  /** Stops every process `ms` from now, unless renewed before. */
  readonly renew: (ms: number) => void
  /** Called each time the fence stopped the processes. */
  readonly onFreeze: (listener: () => void) => void
  /** Continues (SIGCONT) the live process group of `id`, if any. */
  readonly thaw: (id: string) => void
}

/**
 * Settings of a manager. Only `stateDir` is required.
 *
 * @since 0.2.0
 */
export interface Config extends Partial<Managed.Settings> {
  /** Owned by one live manager: logs, data directories, the supervisor token. */
  readonly stateDir: string
  /**
   * How often CPU and memory are sampled (STH's `monitorRate`) while anyone reads them; idle,
   * a read samples on demand. Default 1 s.
   */
  readonly sampleIntervalMs?: number
  /** How often memory limits are checked. Default 250 ms, so a limit acts within 1 s. */
  readonly limitIntervalMs?: number
  /** How long the log files of a removed process are kept (`keepLogs`). Default 10 minutes. */
  readonly logRetentionMs?: number
  /** Graceful stop granted to each managed when the manager shuts down. Default 5 s. */
  readonly shutdownTimeoutMs?: number
  /** Processes it runs at once at most; a spawn beyond is refused. Default 2000. */
  readonly maxProcesses?: number
}

const defaults: Managed.Settings = {
  logRingLines: 10_000,
  logRingBytes: 256 * 1024,
  logFileBytes: 10 * 1024 * 1024,
  logKeepFiles: 3,
  maxLineBytes: 64 * 1024,
  outputRetainBytes: 1024 * 1024,
  outputHighWaterBytes: 1024 * 1024,
  messageBuffer: 1024,
  maxMessageBytes: 4 * 1024 * 1024,
  closeGraceMs: 100,
  crashLogLines: 20
}

const decodeSpec = Schema.decodeUnknownEffect(ProcessSpec)

const isExecutable = (path: string) => {
  try {
    Fs.accessSync(path, Fs.constants.X_OK)
    return Fs.statSync(path).isFile()
  } catch {
    return false
  }
}

/** Finds the program like `execvp` would, so a missing binary is a typed error, not exit 127. */
const locate = (command: string, cwd: string, pathVariable: string | undefined): string | SpawnError => {
  if (command.includes("/")) {
    const path = Path.resolve(cwd, command)
    if (!Fs.existsSync(path)) return new SpawnError({ reason: "CommandNotFound", message: `${command}: no such file` })
    return isExecutable(path)
      ? path
      : new SpawnError({ reason: "PermissionDenied", message: `${command}: not an executable file` })
  }
  for (const dir of (pathVariable ?? "/usr/local/bin:/usr/bin:/bin").split(":")) {
    const path = Path.resolve(cwd, dir || ".", command)
    if (isExecutable(path)) return path
  }
  return new SpawnError({ reason: "CommandNotFound", message: `${command}: command not found on PATH` })
}

const spawnErrorOf = (error: NodeJS.ErrnoException) =>
  new SpawnError({
    reason: error.code === "ENOENT" ? "CommandNotFound" : error.code === "EACCES" ? "PermissionDenied" : "System",
    message: error.message
  })

/**
 * A manager whose processes live as long as the surrounding scope: closing it stops every
 * managed (gracefully, then by force), stops the reaper and releases the state directory.
 *
 * @since 0.2.0
 */
export const make = (config: Config): Effect.Effect<ProcessManager["Service"], StateDirError, Scope.Scope> =>
  Effect.gen(function*() {
    const settings: Managed.Settings = { ...defaults, ...config }
    const stateDir = Path.resolve(config.stateDir)
    const sampleIntervalMs = config.sampleIntervalMs ?? 1000
    const trash = Path.join(stateDir, "trash")
    /** Deletes a rotated-out log file off the event loop: moved aside at once, removed in the thread pool. */
    const discard = (path: string) => {
      const doomed = Path.join(trash, Crypto.randomUUID())
      try {
        Fs.renameSync(path, doomed)
      } catch {
        Fs.rmSync(path, { force: true })
        return
      }
      Fs.rm(doomed, { force: true }, () => {})
    }
    const limitIntervalMs = config.limitIntervalMs ?? 250
    const supervisor = yield* Supervisor.acquire(stateDir)
    // Released after the processes' shutdown below (finalizers run in reverse): their ends come through it.
    const spawner = yield* Spawner.acquire
    yield* Effect.try({
      try: () => {
        // Logs are the runner's alone; data holds each child's own directory (0700, owned by the
        // child's user), so it may be passed through but not listed.
        Fs.mkdirSync(Path.join(stateDir, "logs"), { recursive: true, mode: 0o700 })
        Fs.mkdirSync(Path.join(stateDir, "data"), { recursive: true, mode: 0o711 })
        Fs.chmodSync(Path.join(stateDir, "logs"), 0o700)
        Fs.chmodSync(Path.join(stateDir, "data"), 0o711)
        // What an earlier incarnation was still deleting.
        Fs.rmSync(trash, { recursive: true, force: true })
        Fs.mkdirSync(trash, { mode: 0o700 })
      },
      catch: (error) => new StateDirError({ path: stateDir, message: (error as Error).message })
    })
    const processes = new Map<string, Managed.ManagedProcess>()
    const services = yield* Effect.context<never>()
    const reportBug = (message: string) => Effect.runForkWith(services)(Effect.logError(`bug: ${message}`))

    // Bounded even if a process never reports its end (that would be a bug): shutdown never wedges.
    const shutdownTimeoutMs = config.shutdownTimeoutMs ?? 5000
    yield* Effect.addFinalizer(() =>
      Effect.forEach(
        [...processes.values()].filter((managed) => !managed.isFinal()),
        (managed) =>
          managed.terminate(shutdownTimeoutMs).pipe(
            Effect.timeoutOrElse({
              duration: shutdownTimeoutMs + 5000,
              orElse: () => Effect.sync(() => reportBug(`process ${managed.id} did not end within its shutdown timeout`))
            }),
            Effect.ignore
          ),
        { concurrency: "unbounded", discard: true }
      )
    )

    // One /proc scan per tick serves every managed: stats at `sampleIntervalMs` while someone
    // watches them (asked within `watchWindowMs`), memory limits faster. A manager whose stats
    // nobody reads and whose processes have no memory limit does not scan at all.
    let lastStats = 0
    /** The processes with a memory limit (checked each tick even when nobody watches stats). */
    const limited = new Set<string>()
    let lastAsked = Number.NEGATIVE_INFINITY
    const watchWindowMs = Math.max(10_000, 5 * sampleIntervalMs)
    const sampleAll = (force: boolean) => {
      const now = Date.now()
      const refresh = force || (now - lastStats >= sampleIntervalMs && now - lastAsked < watchWindowMs)
      if (!refresh && limited.size === 0) return
      const groups = new Map<number, Managed.ManagedProcess>()
      for (const managed of processes.values()) {
        const pgid = managed.liveGroup()
        if (pgid !== undefined && (refresh || managed.spec.memoryLimitBytes !== undefined)) groups.set(pgid, managed)
      }
      if (groups.size === 0) return
      if (refresh) lastStats = now
      const usage = readGroups(new Set(groups.keys()))
      for (const [pgid, managed] of groups) managed.sample(usage.get(pgid), now, refresh)
    }
    // A failed sample is logged and the next one goes on: limits must never stop being enforced.
    yield* Effect.sync(() => sampleAll(false)).pipe(
      Effect.catchDefect((defect) => Effect.logWarning("process sampling failed", defect)),
      Effect.repeat(Schedule.spaced(Duration.millis(Math.min(limitIntervalMs, sampleIntervalMs)))),
      Effect.forkScoped
    )

    // A PATH search costs an access() per directory (~0.5 ms a spawn here); a burst of starts of
    // the same command reuses the answer for a few seconds, still checked to be executable.
    const locations = new Map<string, { readonly path: string; readonly at: number }>()
    const located = (command: string, cwd: string, pathVariable: string | undefined) => {
      if (command.includes("/")) return locate(command, cwd, pathVariable)
      const key = `${cwd}\0${pathVariable}\0${command}`
      const now = Date.now()
      const known = locations.get(key)
      if (known !== undefined && now - known.at < 5000 && isExecutable(known.path)) return known.path
      const found = locate(command, cwd, pathVariable)
      if (typeof found === "string") {
        if (locations.size >= 1000) locations.clear()
        locations.set(key, { path: found, at: now })
      }
      return found
    }

    const logsDir = Path.join(stateDir, "logs")
    const logPathOf = (logName: string) => Path.join(logsDir, `${logName}.log`)
    const logNameOf = (managed: Managed.ManagedProcess) => managed.spec.logName ?? managed.id
    /** The managed processes by log name (a spawn checks it: no scan of every process). */
    const byLogName = new Map<string, Managed.ManagedProcess>()
    const add = (managed: Managed.ManagedProcess) => {
      processes.set(managed.id, managed)
      byLogName.set(logNameOf(managed), managed)
      if (managed.spec.memoryLimitBytes !== undefined) limited.add(managed.id)
    }
    const forget = (managed: Managed.ManagedProcess) => {
      processes.delete(managed.id)
      byLogName.delete(logNameOf(managed))
      limited.delete(managed.id)
    }
    // Logs kept after their process was removed go once they are older than the retention.
    const logRetentionMs = config.logRetentionMs ?? 10 * 60_000
    yield* Effect.sync(() => {
      const oldest = Date.now() - logRetentionMs
      for (const file of Fs.readdirSync(logsDir)) {
        const name = file.replace(/\.log(\.\d+)?$/, "")
        if (byLogName.has(name)) continue
        const path = Path.join(logsDir, file)
        if ((Fs.statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? Infinity) < oldest) Fs.rmSync(path, { force: true })
      }
    }).pipe(
      Effect.catchDefect((defect) => Effect.logWarning("could not sweep old logs", defect)),
      Effect.repeat(Schedule.spaced(Duration.millis(Math.min(60_000, logRetentionMs)))),
      Effect.forkScoped
    )

    const find = (id: string) =>
      Effect.suspend(() => {
        const managed = processes.get(id)
        return managed === undefined ? Effect.fail(new ProcessNotFound({ id })) : Effect.succeed(managed)
      })

    const handle = (managed: Managed.ManagedProcess): ProcessHandle => ({
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
        managed.pump(name, readable, {
          end: options.end ?? true,
          first: options.header,
          read: options.read,
          onError: options.onError
        }),
      pipeOutput: (name, writable, options) =>
        managed.pipe(name, options?.replay ?? true, writable, options?.written ?? (() => {})),
      input: (options) => managed.input({ end: options?.end ?? true }),
      logs: (query) => managed.logs(query ?? {}),
      stats: Effect.sync(() => {
        const now = Date.now()
        lastAsked = now
        const stats = managed.stats()
        const stale = Option.isNone(stats) || now - stats.value.sampledAt >= sampleIntervalMs
        if (managed.liveGroup() !== undefined && stale) sampleAll(true)
        return managed.stats()
      })
    })

    const spawn = (input: ProcessSpec) =>
      Effect.gen(function*() {
        const spec = resolve(
          yield* Effect.mapError(decodeSpec(input), (error) => new SpawnError({ reason: "InvalidSpec", message: error.message }))
        )
        const maxProcesses = config.maxProcesses ?? 2000
        const live = processes.size < maxProcesses
          ? processes.size
          : [...processes.values()].filter((managed) => !isTerminal(managed.info().status)).length
        if (live >= maxProcesses) {
          return yield* new SpawnError({
            reason: "Capacity",
            message: `this runner already runs ${live} processes, its limit (SHARDHUB_MAX_INSTANCES=${maxProcesses})`
          })
        }
        const id = Crypto.randomUUID()
        if (spec.logName !== undefined && byLogName.has(spec.logName)) {
          return yield* new SpawnError({ reason: "InvalidSpec", message: `the log name ${spec.logName} is in use by another process` })
        }
        const logPath = logPathOf(spec.logName ?? id)
        const cwd = Path.resolve(spec.cwd ?? globalThis.process.cwd())
        if (!Fs.statSync(cwd, { throwIfNoEntry: false })?.isDirectory()) {
          return yield* new SpawnError({ reason: "BadCwd", message: `working directory ${cwd} does not exist or is not a directory` })
        }
        const dataDir = ChildEnv.dataDirOf(stateDir, id)
        const env = ChildEnv.childEnv(spec, id, dataDir, supervisor.token)
        const identity = Confinement.identity(spec.user, spec.group)
        if (identity instanceof SpawnError) return yield* identity
        const unreachable = identity === undefined ? undefined : Confinement.checkReach(identity, cwd, dataDir)
        if (unreachable !== undefined) return yield* unreachable
        const program = spec.shell ? "/bin/sh" : located(spec.command, cwd, env["PATH"])
        if (typeof program !== "string") return yield* program
        const confined = Confinement.withRlimits(
          program,
          spec.shell ? ["-c", spec.command, "sh", ...spec.args] : spec.args,
          spec.rlimits,
          () => located("prlimit", cwd, env["PATH"])
        )
        if (confined instanceof SpawnError) return yield* confined
        const { argv, file } = confined
        yield* Effect.try({
          try: () => {
            // A reused log name starts a fresh log (its current and rotated files; no directory
            // listing, which would grow with the number of processes).
            if (spec.logName !== undefined && !spec.continueLog) {
              const current = logPathOf(spec.logName)
              for (let n = 0; n <= settings.logKeepFiles; n++) Fs.rmSync(n === 0 ? current : `${current}.${n}`, { force: true })
            }
            Fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 })
            if (identity !== undefined) Fs.chownSync(dataDir, identity.uid, identity.gid)
          },
          catch: (error) => new SpawnError({ reason: "System", message: `cannot create ${dataDir}: ${(error as Error).message}` })
        })
        return yield* Effect.callback<ProcessHandle, SpawnError>((resume) => {
          const managed = Managed.make({
            id,
            spec,
            file,
            argv,
            env,
            identity,
            dataDir,
            logPath,
            discardLog: discard,
            settings,
            supervisor,
            spawner,
            reportBug,
            onFirstSpawn: (result) => {
              if (result._tag === "Spawned") return resume(Effect.succeed(handle(managed)))
              forget(managed)
              managed.remove()
              resume(Effect.fail(spawnErrorOf(result.error)))
            }
          })
          add(managed)
          managed.start()
        })
      })

    const withProcess = <A, E, R>(id: string, f: (managed: Managed.ManagedProcess) => Effect.Effect<A, E, R>) =>
      Effect.flatMap(find(id), f)
    const streamOf = <A, E>(id: string, f: (handle: ProcessHandle) => Stream.Stream<A, E>) =>
      Stream.unwrap(Effect.map(find(id), (managed) => f(handle(managed))))

    return ProcessManager.of({
      spawn: (spec) => Effect.withSpan(spawn(spec), "shardhub.process.spawn", { attributes: { "shardhub.process.command": spec.command } }),
      get: (id) => Effect.map(find(id), handle),
      list: Effect.sync(() => [...processes.values()].map((managed) => managed.info())),
      info: (id) => Effect.map(find(id), (managed) => managed.info()),
      ready: (id) => withProcess(id, (managed) => managed.ready),
      wait: (id) => withProcess(id, (managed) => managed.wait),
      terminate: (id, timeout) => withProcess(id, (managed) => handle(managed).terminate(timeout)),
      kill: (id) => withProcess(id, (managed) => managed.kill),
      send: (id, message) => withProcess(id, (managed) => managed.send(message)),
      messages: (id) => withProcess(id, (managed) => managed.messages),
      stdout: (id, options) => streamOf(id, (handle) => handle.stdout(options)),
      stderr: (id, options) => streamOf(id, (handle) => handle.stderr(options)),
      stdin: (id, options) =>
        Sink.unwrap<void, Uint8Array, never, ProcessNotFound | StdinError, never, never>(Effect.map(find(id), (managed) => handle(managed).stdin(options))),
      logs: (id, query) => streamOf(id, (handle) => handle.logs(query)),
      stats: (id) => withProcess(id, (managed) => handle(managed).stats),
      remove: (id, options) =>
        withProcess(id, (managed) => {
          if (!managed.isFinal()) return Effect.fail(new StillRunning({ id }))
          forget(managed)
          managed.remove(options?.keepLogs ?? false)
          return Effect.void
        }),
      pastLogs: (logName, query) =>
        Stream.suspend(() => {
          const managed = byLogName.get(logName)
          return managed !== undefined
            ? managed.logs(query ?? {})
            : LogStore.past({ id: logName, path: logPathOf(logName), keepFiles: settings.logKeepFiles }, query ?? {})
        }),
      swept: supervisor.swept,
      fencing: {
        renew: supervisor.fence,
        onFreeze: supervisor.onFreeze,
        thaw: (id) => {
          const group = processes.get(id)?.liveGroup()
          if (group === undefined) return
          try {
            globalThis.process.kill(-group, "SIGCONT")
          } catch {
            // ended meanwhile
          }
        }
      }
    })
  })

/**
 * @since 0.2.0
 */
export const layer = (config: Config): Layer.Layer<ProcessManager, StateDirError> =>
  Layer.effect(ProcessManager, make(config))
