/**
 * What happens to instances on a runner, recorded where it happens with Effect's `Metric`
 * module and served by the runner's own `/metrics` (`RunnerMetrics.ts`).
 *
 * @since 0.6.0
 */
import { Duration, Effect, Metric } from "effect"

const starts = Metric.counter("shardhub_instance_starts_total", {
  description: "Process starts of instances on this runner (a start, a restart on request, a takeover), by outcome.",
  incremental: true
})

const ends = Metric.counter("shardhub_instance_ends_total", {
  description: "Instances whose process ended on this runner for good, by status.",
  incremental: true
})

const restarts = Metric.counter("shardhub_instance_restarts_total", {
  description: "Processes started again on this runner by an instance's restart policy.",
  incremental: true
})

const takeovers = Metric.counter("shardhub_instance_takeovers_total", {
  description: "Instances this runner took over from another (failover or handover) and started again.",
  incremental: true
})

const startLatency = Metric.timer("shardhub_instance_start_duration", {
  description: "From a start reaching this runner to its process running (or failing to).",
  boundaries: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
})

/**
 * Records a start: its outcome and how long it took.
 *
 * @since 0.6.0
 */
export const timedStart = <A, E, R>(start: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    const began = performance.now()
    return start.pipe(
      Effect.onExit((exit) =>
        Effect.andThen(
          Metric.update(startLatency, Duration.millis(performance.now() - began)),
          Metric.update(Metric.withAttributes(starts, { outcome: exit._tag === "Success" ? "started" : "failed" }), 1)
        )
      )
    )
  })

/** @since 0.6.0 */
export const ended = (status: "stopped" | "crashed") => Metric.update(Metric.withAttributes(ends, { status }), 1)

/** @since 0.6.0 */
export const restarted = (count: number) => count > 0 ? Metric.update(restarts, count) : Effect.void

/** @since 0.6.0 */
export const tookOver = Metric.update(takeovers, 1)
