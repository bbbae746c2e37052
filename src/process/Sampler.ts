/**
 * The ProcessManager's `/proc` sampler: one scan of `/proc` per tick serves every managed
 * process — stats every `sampleIntervalMs` while someone watches them (asked within the watch
 * window), memory limits every `limitIntervalMs`. A manager whose stats nobody reads and whose
 * processes have no memory limit does not scan at all.
 *
 * @since 0.8.0
 */
import { Duration, Effect, Option, Schedule, type Scope } from "effect"
import type * as Managed from "./ManagedProcess.ts"
import type { ProcessStats } from "./ProcessStatus.ts"
import { readGroups } from "./ProcStats.ts"

/** @since 0.8.0 */
export interface Sampler {
  /** Starts checking the memory limit of `managed`, if it has one. */
  readonly add: (managed: Managed.ManagedProcess) => void
  readonly remove: (managed: Managed.ManagedProcess) => void
  /** The stats of `managed`, sampled now when the last sample is older than the interval. */
  readonly stats: (managed: Managed.ManagedProcess) => Effect.Effect<Option.Option<ProcessStats>>
}

/**
 * The sampler of the processes `processes()` lists, running for the scope. A failed sample is
 * logged and the next one goes on: limits must never stop being enforced.
 *
 * @since 0.8.0
 */
export const make = (
  processes: () => Iterable<Managed.ManagedProcess>,
  options: { readonly sampleIntervalMs: number; readonly limitIntervalMs: number }
): Effect.Effect<Sampler, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { sampleIntervalMs, limitIntervalMs } = options
    /** The processes with a memory limit (checked each tick even when nobody watches stats). */
    const limited = new Set<string>()
    const state = { lastStats: 0, lastAsked: Number.NEGATIVE_INFINITY }
    const watchWindowMs = Math.max(10_000, 5 * sampleIntervalMs)

    const sampleAll = (force: boolean) => {
      const now = Date.now()
      const refresh = force || (now - state.lastStats >= sampleIntervalMs && now - state.lastAsked < watchWindowMs)
      if (!refresh && limited.size === 0) return
      const groups = new Map<number, Managed.ManagedProcess>()
      for (const managed of processes()) {
        const pgid = managed.liveGroup()
        if (pgid !== undefined && (refresh || managed.spec.memoryLimitBytes !== undefined)) groups.set(pgid, managed)
      }
      if (groups.size === 0) return
      if (refresh) state.lastStats = now
      const usage = readGroups(new Set(groups.keys()))
      for (const [pgid, managed] of groups) managed.sample(usage.get(pgid), now, refresh)
    }

    yield* Effect.sync(() => sampleAll(false)).pipe(
      Effect.catchDefect((defect) => Effect.logWarning("process sampling failed", defect)),
      Effect.repeat(Schedule.spaced(Duration.millis(Math.min(limitIntervalMs, sampleIntervalMs)))),
      Effect.forkScoped
    )

    return {
      add: (managed) => {
        if (managed.spec.memoryLimitBytes !== undefined) limited.add(managed.id)
      },
      remove: (managed) => {
        limited.delete(managed.id)
      },
      stats: (managed) =>
        Effect.sync(() => {
          const now = Date.now()
          state.lastAsked = now
          const stats = managed.stats()
          const stale = Option.isNone(stats) || now - stats.value.sampledAt >= sampleIntervalMs
          if (managed.liveGroup() !== undefined && stale) sampleAll(true)
          return managed.stats()
        })
    }
  })
