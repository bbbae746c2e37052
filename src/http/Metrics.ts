/**
 * `GET /metrics`: the cluster in Prometheus' text format — instances by status, runners with
 * their health, shards and instances, sequences, and each running instance's CPU, RSS and
 * restarts (asked of its runner; an instance that does not answer within a second is left out).
 *
 * @since 0.4.0
 */
import { Duration, Effect } from "effect"
import { HostClient } from "../client/HostClient.ts"
import { InstanceClient } from "../client/InstanceClient.ts"
import { InstanceStatus } from "../instance/InstanceSpec.ts"

const escape = (value: string) => value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

const labels = (values: Record<string, string>) => {
  const entries = Object.entries(values)
  return entries.length === 0 ? "" : `{${entries.map(([k, v]) => `${k}="${escape(v)}"`).join(",")}}`
}

interface Family {
  readonly name: string
  readonly help: string
  readonly samples: ReadonlyArray<readonly [Record<string, string>, number]>
}

/**
 * Renders metric families (all gauges) in the Prometheus text format 0.0.4.
 *
 * @since 0.4.0
 */
export const render = (families: ReadonlyArray<Family>): string =>
  families.map((family) =>
    [
      `# HELP ${family.name} ${family.help}`,
      `# TYPE ${family.name} gauge`,
      ...family.samples.map(([values, value]) => `${family.name}${labels(values)} ${value}`)
    ].join("\n")
  ).join("\n") + "\n"

/**
 * Reads the cluster's metrics now.
 *
 * @since 0.4.0
 */
export const collect = Effect.gen(function*() {
  const host = yield* HostClient
  const instances = yield* InstanceClient
  const [all, runners, sequences] = yield* Effect.all([host.list(), host.runners, host.listSequences], {
    concurrency: 3
  })
  const running = all.filter((info) => info.status === "running")
  const stats = yield* Effect.forEach(
    running,
    (info) =>
      instances.stats(info.id).pipe(
        Effect.timeout(Duration.seconds(1)),
        Effect.map((stats) => ({ info, stats })),
        Effect.option
      ),
    { concurrency: 16 }
  )
  const sampled = stats.flatMap((option) => option._tag === "Some" ? [option.value] : [])
  const instance = (info: (typeof all)[number]) => ({ id: info.id, runner: info.runner ?? "" })
  return render([
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
    { name: "shardhub_sequences", help: "Stored sequences.", samples: [[{}, sequences.length]] },
    {
      name: "shardhub_instance_cpu_percent",
      help: "CPU of a running instance's process group, in percent of one core.",
      samples: sampled.map(({ info, stats }) => [instance(info), stats.cpuPercent])
    },
    {
      name: "shardhub_instance_rss_bytes",
      help: "Resident memory of a running instance's process group.",
      samples: sampled.map(({ info, stats }) => [instance(info), stats.rssBytes])
    },
    {
      name: "shardhub_instance_restarts",
      help: "Process starts of an instance after its first (restart policy or failover).",
      samples: running.map((info) => [instance(info), info.restarts])
    }
  ])
})
