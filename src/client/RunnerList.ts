/**
 * The runners of the cluster as the store sees them: every registered runner, whether it is
 * marked healthy, its last heartbeat, and how many shards it holds right now.
 *
 * Shard ownership is read from Postgres advisory locks (what Effect's `SqlRunnerStorage` uses):
 * each runner's connections carry its address in their application name (see
 * `Cluster.runnerApplicationName`), so `pg_locks` joined with `pg_stat_activity` counts its shards.
 *
 * @since 0.4.0
 */
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { Labels, labelsOf } from "../base/Labels.ts"
import { isEnded } from "../instance/InstanceSpec.ts"
import type { Registry } from "../instance/Registry.ts"

/**
 * @since 0.4.0
 */
export class RunnerRow extends Schema.Class<RunnerRow>("shardhub/RunnerRow")({
  address: Schema.String,
  healthy: Schema.Boolean,
  /** Drained (`shardhub runner drain`): it hands its instances over and takes nothing new. */
  drained: Schema.Boolean,
  /** Its labels (`shardhub runner --label`): what instances may require of it. */
  labels: Labels,
  /** How long ago its last heartbeat was recorded, in ms. */
  heartbeatAgeMs: Schema.Number,
  shards: Schema.Number
}) {}

/**
 * Every registered runner, by address.
 *
 * @since 0.4.0
 */
export const list = Effect.gen(function*() {
  const sql = yield* SqlClient
  const rows = yield* sql<{
    readonly address: string
    readonly healthy: boolean
    readonly drained: boolean
    readonly requirements: string
    readonly heartbeat_age_ms: number
    readonly shards: number
  }>`
    SELECT r.address, r.healthy AND d.address IS NULL AS healthy, d.address IS NOT NULL AS drained,
      COALESCE((SELECT string_agg(g.requirement, ',') FROM shardhub_placement_groups g
        WHERE (r.runner::jsonb -> 'groups') ? g.name), '') AS requirements,
      (extract(epoch FROM (localtimestamp - r.last_heartbeat)) * 1000)::float8 AS heartbeat_age_ms,
      COALESCE(s.shards, 0)::int AS shards
    FROM cluster_runners r
    LEFT JOIN (
      SELECT a.application_name, count(*) AS shards
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      GROUP BY a.application_name
    ) s ON s.application_name LIKE '% ' || r.address
    LEFT JOIN shardhub_drains d ON d.address = r.address
    ORDER BY r.address`
  return rows.map((row) =>
    new RunnerRow({
      address: row.address,
      healthy: row.healthy,
      drained: row.drained,
      // Its groups' requirements: every subset of its labels, so their union is the labels.
      labels: labelsOf(row.requirements),
      heartbeatAgeMs: Math.max(0, Math.round(row.heartbeat_age_ms)),
      shards: row.shards
    })
  )
})

/**
 * A registered runner and how many instances it runs.
 *
 * @since 0.8.0
 */
export interface RunnerWithInstances {
  readonly address: string
  readonly healthy: boolean
  readonly drained: boolean
  readonly labels: Labels
  readonly heartbeatAgeMs: number
  readonly shards: number
  readonly instances: number
}

/**
 * Every registered runner with the instances it runs (from `registry`).
 *
 * @since 0.6.0
 */
export const withInstances = (registry: Registry["Service"]) =>
  Effect.gen(function*() {
    const [rows, live] = yield* Effect.all([list, registry.list()], { concurrency: 2 })
    return rows.map((row) => ({
      ...row,
      instances: live.filter((info) => info.runner === row.address && !isEnded(info.status)).length
    }))
  })

/**
 * Whether a live runner (healthy, not drained) serves the placement group `group`.
 *
 * @since 0.10.0
 */
export const serving = (group: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ readonly n: number }>`
      SELECT count(*)::int AS n FROM cluster_runners r
      WHERE r.healthy AND r.last_heartbeat > localtimestamp - INTERVAL '10 seconds'
        AND NOT EXISTS (SELECT 1 FROM shardhub_drains d WHERE d.address = r.address)
        AND (r.runner::jsonb -> 'groups') ? ${group}`
    return rows[0]!.n > 0
  })
