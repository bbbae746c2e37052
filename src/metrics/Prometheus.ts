/**
 * Samples read at scrape time (the cluster's records, each process's resource use) as Effect
 * gauges in a registry of their own, made for the scrape and formatted with Effect's
 * `PrometheusMetrics`: nothing outlives the scrape, so an instance or runner that is gone leaves
 * no series behind, and no exposition format is written by hand.
 *
 * @since 0.6.0
 */
import { Effect, Metric } from "effect"
import { PrometheusMetrics } from "effect/observability"

/**
 * A gauge family: its samples, each with its labels.
 *
 * @since 0.6.0
 */
export interface Family {
  readonly name: string
  readonly help: string
  readonly samples: ReadonlyArray<readonly [Record<string, string>, number]>
}

/**
 * The families in Prometheus' text format.
 *
 * @since 0.6.0
 */
export const render = (families: ReadonlyArray<Family>): Effect.Effect<string> =>
  Effect.gen(function*() {
    for (const family of families) {
      const gauge = Metric.gauge(family.name, { description: family.help })
      for (const [labels, value] of family.samples) yield* Metric.update(Metric.withAttributes(gauge, labels), value)
    }
    return yield* PrometheusMetrics.format()
  }).pipe(Effect.provideService(Metric.MetricRegistry, new Map()))
