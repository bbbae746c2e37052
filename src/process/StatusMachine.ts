/**
 * A managed process's status and the only ways it may change: named transitions, each legal
 * from a fixed set of statuses (hyperactor's `ProcStatus` discipline). An illegal attempt is a
 * bug: it is reported by name, with the status it was tried from, and changes nothing.
 *
 *   Starting ─spawned→ Running ─ready→ Ready
 *   Running | Ready ─stopping→ Stopping
 *   Starting | Running | Ready | Stopping ─backoff→ Backoff ─restarting→ Starting
 *   any live status ─ended→ Exited | Killed | Failed   (final)
 *
 * @since 0.6.0
 */
import { Effect, Queue, Stream } from "effect"
import { isTerminal, type Status, type Terminal } from "./ProcessStatus.ts"

type Tag = Status["_tag"]
const live: ReadonlyArray<Tag> = ["Starting", "Running", "Ready", "Stopping", "Backoff"]

/**
 * @since 0.6.0
 */
export interface StatusMachine {
  readonly current: () => Status
  /** The status now, then every status it moves to, ending after the terminal one. */
  readonly changes: Stream.Stream<Status>
  /** The OS gave the run a pid. */
  readonly spawned: (pid: number, startedAt: number) => boolean
  /** The run said it is ready (or needs no readiness). */
  readonly ready: (readyAt: number) => boolean
  /** A stop was asked for. */
  readonly stopping: () => boolean
  /** A run ended (or a restart's spawn failed) and the policy restarts it at `restartAt`. */
  readonly backoff: (restartAt: number, last: Terminal) => boolean
  /** The backoff is over; the next run is being spawned. */
  readonly restarting: () => boolean
  /** The process is over for good. */
  readonly ended: (terminal: Terminal) => boolean
}

/**
 * A machine in `Starting`; `reportBug` hears of every illegal transition.
 *
 * @since 0.6.0
 */
export const make = (id: string, reportBug: (message: string) => void): StatusMachine => {
  let status: Status = { _tag: "Starting" }
  const watchers = new Set<(status: Status) => void>()
  const move = (name: string, from: ReadonlyArray<Tag>, next: () => Status): boolean => {
    if (!from.includes(status._tag)) {
      reportBug(`process ${id}: illegal transition '${name}' from ${status._tag}`)
      return false
    }
    status = next()
    for (const watcher of [...watchers]) watcher(status)
    return true
  }
  const pidOf = () => (status as { readonly pid: number }).pid
  const startedAtOf = () => (status as { readonly startedAt: number }).startedAt
  return {
    current: () => status,
    changes: Stream.callback<Status>((queue) =>
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
      )
    ),
    spawned: (pid, startedAt) => move("spawned", ["Starting"], () => ({ _tag: "Running", pid, startedAt })),
    ready: (readyAt) =>
      move("ready", ["Running"], () => ({ _tag: "Ready", pid: pidOf(), startedAt: startedAtOf(), readyAt })),
    stopping: () =>
      move("stopping", ["Running", "Ready"], () => ({ _tag: "Stopping", pid: pidOf(), startedAt: startedAtOf() })),
    backoff: (restartAt, last) =>
      move("backoff", ["Starting", "Running", "Ready", "Stopping"], () => ({ _tag: "Backoff", restartAt, last })),
    restarting: () => move("restarting", ["Backoff"], () => ({ _tag: "Starting" })),
    ended: (terminal) => move("ended", live, () => terminal)
  }
}
