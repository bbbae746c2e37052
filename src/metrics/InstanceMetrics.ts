/**
 * What happens to instances, recorded where it happens with Effect's `Metric` module: on a
 * runner (starts, ends, restarts, takeovers, start latency, bytes through the data port; served
 * by its `/metrics`, `RunnerMetrics.ts`), and on a client (how long calls to instances take;
 * the gateway serves its own).
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

const bytes = Metric.counter("shardhub_instance_bytes_total", {
  description: "Bytes through this runner's data port, into processes (in) and out of them (out), also on connections a process took itself.",
  incremental: true
})

/**
 * Counts bytes a process moved itself on a data connection it took (its own report).
 *
 * @since 0.11.0
 */
export const directBytes = (bytesIn: number, bytesOut: number) =>
  Effect.all([
    bytesIn > 0 ? Metric.update(Metric.withAttributes(bytes, { direction: "in" }), bytesIn) : Effect.void,
    bytesOut > 0 ? Metric.update(Metric.withAttributes(bytes, { direction: "out" }), bytesOut) : Effect.void
  ], { discard: true })

/**
 * Counts bytes going `direction`: `add` is called per chunk and updates the counter once per
 * MiB (an update per chunk costs more than moving the chunk); `flush` adds the rest.
 *
 * @since 0.7.0
 */
export const byteTally = (direction: "in" | "out") =>
  Effect.map(Effect.context<never>(), (context) => {
    const counter = Metric.withAttributes(bytes, { direction })
    let pending = 0
    const flush = () => {
      if (pending > 0) counter.updateUnsafe(pending, context)
      pending = 0
    }
    return {
      add: (count: number) => {
        pending += count
        if (pending >= 1024 * 1024) flush()
      },
      flush: Effect.sync(flush)
    }
  })

const calls = Metric.timer("shardhub_instance_call_duration", {
  description: "Calls from this participant to instances, by operation, until answered.",
  boundaries: [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000]
})

const callTimers = new Map<string, typeof calls>()

/**
 * Records how long a call to an instance took.
 *
 * @since 0.6.0
 */
export const timedCall = (operation: string) => {
  // Made once per operation: hashing the attributes cost ~1 µs a call.
  let timer = callTimers.get(operation)
  if (timer === undefined) callTimers.set(operation, timer = Metric.withAttributes(calls, { operation }))
  return <A, E, R>(call: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.suspend(() => {
      const began = performance.now()
      return Effect.onExit(call, () => Metric.update(timer, Duration.millis(performance.now() - began)))
    })
}
