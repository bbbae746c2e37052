/**
 * Gives a runner's memory back after many of its processes went away.
 *
 * Why: V8 collects its old generation when it grows, and gives freed pages back to the OS when
 * the process is idle. A runner is never idle (heartbeats, lock refreshes, timers), and after its
 * instances stop it allocates too little to start a full collection, so their memory stayed: 1,000
 * stopped instances left a runner at 308 MB for minutes, against 163 MB empty. One full collection
 * once they are gone is enough: ten seconds later it held 139 MB.
 *
 * When: the runner's process count fell by at least `minDrop` (and a quarter of its peak) from
 * the highest it has been since the last collection, and has not fallen further for `quietMs`
 * (long enough for the ended instances' entities to leave memory too: the entity idle time and a
 * margin). Then one full collection (its pause grows with what is live, not with the garbage: 8 ms
 * for a 300 MB heap of garbage), and the peak starts over.
 *
 * @since 0.11.0
 */
import { Duration, Effect, Layer, Schedule } from "effect"
import { collectGarbage } from "../base/heap.js"
import { ProcessManager } from "../process/ProcessManager.ts"

/**
 * What the settler remembers between samples.
 *
 * @since 0.11.0
 */
export interface State {
  /** The highest process count since the last collection. */
  readonly peak: number
  /** The count at the previous sample. */
  readonly last: number
  /** When the count last fell (ms), if it fell since the last collection. */
  readonly fellAt: number | undefined
}

/** @since 0.11.0 */
export const initial: State = { peak: 0, last: 0, fellAt: undefined }

/**
 * @since 0.11.0
 */
export interface Options {
  readonly minDrop: number
  readonly quietMs: number
}

/**
 * The next state after sampling `count` processes at `now`, and whether to collect now.
 *
 * @since 0.11.0
 */
export const step = (state: State, count: number, now: number, options: Options): { readonly state: State; readonly collect: boolean } => {
  const peak = Math.max(state.peak, count)
  const fellAt = count < state.last ? now : state.fellAt
  const drop = peak - count
  if (fellAt !== undefined && drop >= options.minDrop && drop * 4 >= peak && now - fellAt >= options.quietMs) {
    return { state: { peak: count, last: count, fellAt: undefined }, collect: true }
  }
  return { state: { peak, last: count, fellAt }, collect: false }
}

/**
 * Samples the ProcessManager every `every` for the layer's lifetime.
 *
 * @since 0.11.0
 */
export const layer = (options: Options & { readonly every?: Duration.Input }) =>
  Layer.effectDiscard(Effect.gen(function*() {
    const processes = yield* ProcessManager
    let state = initial
    const sample = Effect.flatMap(processes.count, (count) =>
      Effect.suspend(() => {
        const next = step(state, count, Date.now(), options)
        state = next.state
        if (!next.collect) return Effect.void
        return Effect.logDebug(`${next.state.last} processes after a drop: a full collection`).pipe(
          Effect.andThen(Effect.sync(collectGarbage))
        )
      }))
    yield* Effect.forkScoped(Effect.repeat(sample, Schedule.spaced(options.every ?? Duration.seconds(5))))
  }))
