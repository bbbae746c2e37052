/**
 * `GET /metrics` of the gateway: the cluster as its store sees it, in Prometheus' text format —
 * instances by status, runners with their health, shards, instances and heartbeat age, and
 * sequences. What happens on a runner (starts, ends, restarts, start latency, each process's CPU
 * and memory) is served by that runner's own `/metrics` (`RunnerMetrics.ts`), so a scrape never
 * fans out to instances. The gateway's own metrics follow (how long its calls to instances take).
 *
 * @since 0.4.0
 */
import { Effect } from "effect"
import { PrometheusMetrics } from "effect/observability"
import { HostClient } from "../client/HostClient.ts"
import { InstanceStatus } from "../instance/InstanceSpec.ts"
import { render } from "../metrics/Prometheus.ts"

/**
 * Reads the cluster's metrics now.
 *
 * @since 0.4.0
 */
export const collect = Effect.gen(function*() {
  const host = yield* HostClient
  const [all, runners, sequences] = yield* Effect.all([host.list(), host.runners, host.listSequences], {
    concurrency: 3
  })
  // The gateway's own metrics (calls to instances, Effect cluster's client side) come after.
  const own = yield* PrometheusMetrics.format()
  const view = yield* render([
    {
      name: "shardhub_instances",
      help: "Instances in the registry, by status.",
      samples: InstanceStatus.literals.map((status) => [{ status }, all.filter((info) => info.status === status).length])
    },
    {
      name: "shardhub_runners",
      help: "Registered runners, by health.",
      samples: [true, false].map((healthy) => [
        { healthy: String(healthy) },
        runners.filter((runner) => runner.healthy === healthy).length
      ])
    },
    {
      name: "shardhub_runner_shards",
      help: "Shards each runner holds.",
      samples: runners.map((runner) => [{ runner: runner.address }, runner.shards])
    },
    {
      name: "shardhub_runner_instances",
      help: "Instances each runner runs.",
      samples: runners.map((runner) => [{ runner: runner.address }, runner.instances])
    },
    {
      name: "shardhub_runner_heartbeat_age_seconds",
      help: "Seconds since each runner's last heartbeat in the store.",
      samples: runners.map((runner) => [{ runner: runner.address }, runner.heartbeatAgeMs / 1000])
    },
    { name: "shardhub_sequences", help: "Stored sequences.", samples: [[{}, sequences.length]] }
  ])
  return own === "" ? view : `${view}${view.endsWith("\n") ? "" : "\n"}${own}`
})
