/**
 * The ProcessManager's log directory (`<stateDir>/logs`, 0700): where each process's log lives
 * (`<logName>.log` and its rotated files), how a rotated-out file is taken away off the event
 * loop (moved to `<stateDir>/trash`, removed in the thread pool), and the retention of the logs
 * of removed processes (swept once older than `retentionMs`).
 *
 * @since 0.8.0
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Duration, Effect, Schedule, type Scope, type Stream } from "effect"
import * as LogStore from "./LogStore.ts"
import { type LogsError, StateDirError } from "./ProcessErrors.ts"

/** @since 0.8.0 */
export interface LogDirectory {
  readonly pathOf: (logName: string) => string
  /** Deletes a rotated-out log file off the event loop: moved aside at once, removed in the thread pool. */
  readonly discard: (path: string) => void
  /** Deletes a log's current and rotated files (a reused log name starts a fresh log). */
  readonly clear: (logName: string) => void
  /** What the files of a log whose process is gone still hold. */
  readonly past: (logName: string, query: LogStore.LogsQuery) => Stream.Stream<LogStore.LogLine, LogsError>
}

/**
 * The log directory of `stateDir`, created (or taken over: what an earlier incarnation was
 * still deleting is dropped), swept for the scope. `inUse` says whether a log name belongs to a
 * managed process (its files are never swept).
 *
 * @since 0.8.0
 */
export const make = (
  stateDir: string,
  options: { readonly keepFiles: number; readonly retentionMs: number; readonly inUse: (logName: string) => boolean }
): Effect.Effect<LogDirectory, StateDirError, Scope.Scope> =>
  Effect.gen(function*() {
    const logsDir = Path.join(stateDir, "logs")
    const trash = Path.join(stateDir, "trash")
    yield* Effect.tryPromise({
      try: async () => {
        await Fs.promises.mkdir(logsDir, { recursive: true, mode: 0o700 })
        await Fs.promises.chmod(logsDir, 0o700)
        await Fs.promises.rm(trash, { recursive: true, force: true })
        await Fs.promises.mkdir(trash, { mode: 0o700 })
      },
      catch: (error) => new StateDirError({ path: stateDir, message: (error as Error).message })
    })
    const pathOf = (logName: string) => Path.join(logsDir, `${logName}.log`)

    yield* Effect.promise(async () => {
      const oldest = Date.now() - options.retentionMs
      for (const file of await Fs.promises.readdir(logsDir)) {
        if (options.inUse(file.replace(/\.log(\.\d+)?$/, ""))) continue
        const path = Path.join(logsDir, file)
        const stat = await Fs.promises.stat(path).catch(() => undefined)
        if ((stat?.mtimeMs ?? Infinity) < oldest) await Fs.promises.rm(path, { force: true })
      }
    }).pipe(
      Effect.catchDefect((defect) => Effect.logWarning("could not sweep old logs", defect)),
      Effect.repeat(Schedule.spaced(Duration.millis(Math.min(60_000, options.retentionMs)))),
      Effect.forkScoped
    )

    return {
      pathOf,
      discard: (path) => {
        const doomed = Path.join(trash, Crypto.randomUUID())
        try {
          Fs.renameSync(path, doomed)
        } catch {
          Fs.rmSync(path, { force: true })
          return
        }
        Fs.rm(doomed, { force: true }, () => {})
      },
      // On the path of every start: a few unlinks in the state directory (ours, local) cost
      // microseconds, less than one thread-pool round trip each would.
      clear: (logName) => {
        const current = pathOf(logName)
        for (let n = 0; n <= options.keepFiles; n++) Fs.rmSync(n === 0 ? current : `${current}.${n}`, { force: true })
      },
      past: (logName, query) => LogStore.past({ id: logName, path: pathOf(logName), keepFiles: options.keepFiles }, query)
    }
  })
