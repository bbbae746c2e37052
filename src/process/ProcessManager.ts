/**
 * The ProcessManager: runs, watches, talks to, measures, limits and stops OS processes on one
 * machine. It knows nothing of entities or the cluster. This module assembles it from its
 * pieces: each process's handle (`ProcessHandle`), the checks and file work before a spawn
 * (`SpawnPlan`), the `/proc` sampler (`Sampler`), the log directory with its retention
 * (`LogDirectory`), the spawner and the supervisor with its reaper.
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
import { Context, Effect, Layer, Schema, Scope, Stream } from "effect"
import * as LogDirectory from "./LogDirectory.ts"
import type { LogLine, LogsQuery } from "./LogStore.ts"
import * as Managed from "./ManagedProcess.ts"
import { type LogsError, ProcessNotFound, SpawnError, StateDirError, StillRunning } from "./ProcessErrors.ts"
import * as ProcessHandle from "./ProcessHandle.ts"
import { ProcessSpec, resolve } from "./ProcessSpec.ts"
import { isTerminal, type ProcessInfo } from "./ProcessStatus.ts"
import * as Sampler from "./Sampler.ts"
import * as SpawnPlan from "./SpawnPlan.ts"
import * as Spares from "./Spares.ts"
import { type Config, defaults } from "./ManagerConfig.ts"
import * as Supervisor from "./Supervisor.ts"

export type { Config } from "./ManagerConfig.ts"

/**
 * @since 0.2.0
 */
export class ProcessManager extends Context.Service<ProcessManager, {
  readonly spawn: (spec: ProcessSpec) => Effect.Effect<ProcessHandle.ProcessHandle, SpawnError>
  readonly get: (id: string) => Effect.Effect<ProcessHandle.ProcessHandle, ProcessNotFound>
  readonly list: Effect.Effect<ReadonlyArray<ProcessInfo>>
  /** How many processes it manages (ended ones not yet removed included), without listing them. */
  readonly count: Effect.Effect<number>
  /** Forgets an ended process and deletes its logs. */
  readonly remove: (id: string, options?: { readonly keepLogs?: boolean }) => Effect.Effect<void, ProcessNotFound | StillRunning>
  /**
   * The log named `logName` (see `ProcessSpec.logName`): of its process while the manager has it,
   * else what its files still hold (kept for `logRetentionMs` after their last line).
   */
  readonly pastLogs: (logName: string, query?: LogsQuery) => Stream.Stream<LogLine, LogsError>
  /** Processes a previous incarnation left behind, killed when this manager started. */
  readonly swept: number
  /** The fence over every process (see `Supervisor.Fencing`). */
  readonly fencing: Supervisor.Fencing
}>()("shardhub/ProcessManager") {}

const decodeSpec = Schema.decodeUnknownEffect(ProcessSpec)

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
    const maxProcesses = config.maxProcesses ?? 2000
    const supervisor = yield* Supervisor.acquire(stateDir)
    // Released after the processes' shutdown below (finalizers run in reverse): their ends come through it.
    const spawner = yield* Spares.acquire
    // Data holds each child's own directory (0700, owned by the child's user): passable, not listable.
    yield* Effect.tryPromise({
      try: async () => {
        await Fs.promises.mkdir(Path.join(stateDir, "data"), { recursive: true, mode: 0o711 })
        await Fs.promises.chmod(Path.join(stateDir, "data"), 0o711)
      },
      catch: (error) => new StateDirError({ path: stateDir, message: (error as Error).message })
    })
    const processes = new Map<string, Managed.ManagedProcess>()
    /** The managed processes by log name (a spawn checks it: no scan of every process). */
    const byLogName = new Map<string, Managed.ManagedProcess>()
    const logNameOf = (managed: Managed.ManagedProcess) => managed.spec.logName ?? managed.id
    const logs = yield* LogDirectory.make(stateDir, {
      keepFiles: settings.logKeepFiles,
      retentionMs: config.logRetentionMs ?? 10 * 60_000,
      inUse: (logName) => byLogName.has(logName)
    })
    const sampler = yield* Sampler.make(() => processes.values(), {
      sampleIntervalMs: config.sampleIntervalMs ?? 1000,
      limitIntervalMs: config.limitIntervalMs ?? 250
    })
    const planner = SpawnPlan.make(stateDir, supervisor.token)
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

    const add = (managed: Managed.ManagedProcess) => {
      processes.set(managed.id, managed)
      byLogName.set(logNameOf(managed), managed)
      sampler.add(managed)
    }
    const forget = (managed: Managed.ManagedProcess) => {
      processes.delete(managed.id)
      byLogName.delete(logNameOf(managed))
      sampler.remove(managed)
    }
    const handle = (managed: Managed.ManagedProcess) => ProcessHandle.of(managed, sampler.stats(managed))
    const find = (id: string) =>
      Effect.suspend(() => {
        const managed = processes.get(id)
        return managed === undefined ? Effect.fail(new ProcessNotFound({ id })) : Effect.succeed(managed)
      })

    const spawn = (input: ProcessSpec) =>
      Effect.gen(function*() {
        const spec = resolve(
          yield* Effect.mapError(decodeSpec(input), (error) => new SpawnError({ reason: "InvalidSpec", message: error.message }))
        )
        const live = processes.size < maxProcesses
          ? processes.size
          : [...processes.values()].filter((managed) => !isTerminal(managed.info().status)).length
        if (live >= maxProcesses) {
          return yield* new SpawnError({
            reason: "Capacity",
            message: `this runner already runs ${live} processes, its limit (SHARDHUB_MAX_INSTANCES=${maxProcesses})`
          })
        }
        if (spec.logName !== undefined && byLogName.has(spec.logName)) {
          return yield* new SpawnError({ reason: "InvalidSpec", message: `the log name ${spec.logName} is in use by another process` })
        }
        const id = Crypto.randomUUID()
        const plan = yield* planner.plan(spec, id)
        // A reused log name starts a fresh log (its current and rotated files).
        if (spec.logName !== undefined && !spec.continueLog) {
          yield* Effect.try({
            try: () => logs.clear(spec.logName!),
            catch: (error) => new SpawnError({ reason: "System", message: `cannot start a fresh log: ${(error as Error).message}` })
          })
        }
        return yield* Effect.callback<ProcessHandle.ProcessHandle, SpawnError>((resume) => {
          const managed = Managed.make({
            id,
            spec,
            ...plan,
            logPath: logs.pathOf(spec.logName ?? id),
            discardLog: logs.discard,
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

    return ProcessManager.of({
      spawn: (spec) => Effect.withSpan(spawn(spec), "shardhub.process.spawn", { attributes: { "shardhub.process.command": spec.command } }),
      get: (id) => Effect.map(find(id), handle),
      list: Effect.sync(() => [...processes.values()].map((managed) => managed.info())),
      count: Effect.sync(() => processes.size),
      remove: (id, options) =>
        Effect.flatMap(find(id), (managed) => {
          if (!managed.isFinal()) return Effect.fail(new StillRunning({ id }))
          forget(managed)
          managed.remove(options?.keepLogs ?? false)
          return Effect.void
        }),
      pastLogs: (logName, query) =>
        Stream.suspend(() => {
          const managed = byLogName.get(logName)
          return managed !== undefined ? managed.logs(query ?? {}) : logs.past(logName, query ?? {})
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
