/**
 * Draining a runner for maintenance: `shardhub runner drain ADDRESS`.
 *
 * A drain is a row in `shardhub_drains`. Every participant's runner list reports a drained
 * runner unhealthy (see `liveness/CrashDetection`), so Effect's Sharding assigns its shards to
 * the other runners and gives it nothing new, while it lives on: its instances keep running
 * until their turn, when each stops there and starts on its new runner, `parallel` at a time,
 * each running (ready, where its spec asks for readiness) before the next goes (see
 * `liveness/Handover`). `undrain` deletes the row: the runner takes shards again.
 *
 * @since 0.10.0
 */
import { Effect, Schedule, Schema, Stream } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { meets, requirementKey } from "../base/Labels.ts"
import { isEnded } from "../instance/InstanceSpec.ts"
import type { Registry } from "../instance/Registry.ts"
import * as RunnerList from "./RunnerList.ts"

/**
 * The address names no registered runner, or the drain would leave no runner to take over.
 *
 * @since 0.10.0
 */
export class DrainError extends Schema.TaggedError<DrainError>()("DrainError", {
  reason: Schema.Literals(["UnknownRunner", "LastRunner", "NotDrained", "Store"]),
  message: Schema.String
}) {
  get httpStatus(): number {
    return this.reason === "UnknownRunner" ? 404 : this.reason === "Store" ? 503 : 409
  }
}

/**
 * Where a drain stands: what the runner still runs and holds.
 *
 * @since 0.10.0
 */
export class DrainProgress extends Schema.Class<DrainProgress>("shardhub/DrainProgress")({
  address: Schema.String,
  /** Instances whose process still runs on the runner (or stopped there, not yet running anew). */
  instances: Schema.Number,
  /** Shard locks it still holds. */
  shards: Schema.Number
}) {}

const storeError = (error: { readonly message: string }) =>
  new DrainError({ reason: "Store", message: `cluster store: ${error.message}` })

const address = /^[A-Za-z0-9.\-:[\]]{1,255}:\d{1,5}$/

/** The runner at `at` as the store lists it, or a clear error. */
const listed = (at: string) =>
  Effect.gen(function*() {
    if (!address.test(at)) {
      return yield* new DrainError({ reason: "UnknownRunner", message: `"${at}" is not a runner address (HOST:PORT, as shardhub runners lists)` })
    }
    const rows = yield* RunnerList.list.pipe(Effect.mapError(storeError))
    const row = rows.find((r) => r.address === at)
    if (row === undefined) {
      return yield* new DrainError({
        reason: "UnknownRunner",
        message: `no runner at ${at}${rows.length === 0 ? "" : ` (runners: ${rows.map((r) => r.address).join(", ")})`}`
      })
    }
    return { row, rows }
  })

/**
 * Drains the runner at `at`: its instances move to the other runners `parallel` at a time.
 * Refused for an unknown address, and when no other healthy runner would be left. Draining a
 * drained runner again only changes its pace.
 *
 * @since 0.10.0
 */
export const drain = (registry: Registry["Service"], at: string, options: { readonly parallel: number }) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const { rows } = yield* listed(at)
    const others = rows.filter((r) => r.address !== at && r.healthy)
    if (others.length === 0) {
      return yield* new DrainError({ reason: "LastRunner", message: `draining ${at} would leave no healthy runner to take its instances` })
    }
    // Nor may it leave an instance with no runner that meets its placement.
    const live = yield* registry.list().pipe(Effect.mapError(storeError))
    const stranded = new Set(live
      .filter((info) => info.runner === at && !isEnded(info.status) && info.spec.placement !== undefined)
      .map((info) => info.spec.placement!.on)
      .filter((on) => !others.some((r) => meets(r.labels, on)))
      .map(requirementKey))
    if (stranded.size > 0) {
      return yield* new DrainError({
        reason: "LastRunner",
        message: `draining ${at} would leave no runner for its instances placed on ${[...stranded].sort().join("; ")}`
      })
    }
    yield* sql`INSERT INTO shardhub_drains (address, parallel) VALUES (${at}, ${options.parallel})
      ON CONFLICT (address) DO UPDATE SET parallel = EXCLUDED.parallel`.pipe(Effect.mapError(storeError))
  })

/**
 * Ends the drain of the runner at `at`: it takes shards again (those the hash ring gives it
 * move back to it at once, as when a runner joins).
 *
 * @since 0.10.0
 */
export const undrain = (at: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* listed(at)
    const deleted = yield* sql`DELETE FROM shardhub_drains WHERE address = ${at} RETURNING address`.pipe(Effect.mapError(storeError))
    if (deleted.length === 0) return yield* new DrainError({ reason: "NotDrained", message: `${at} is not drained` })
  })

/**
 * Where the drain of `at` stands now.
 *
 * @since 0.10.0
 */
export const progress = (registry: Registry["Service"], at: string) =>
  Effect.gen(function*() {
    const [rows, live] = yield* Effect.all([RunnerList.list.pipe(Effect.mapError(storeError)), registry.list()], { concurrency: 2 })
    return new DrainProgress({
      address: at,
      instances: live.filter((info) => info.runner === at && !isEnded(info.status) && info.status !== "scheduled").length,
      shards: rows.find((r) => r.address === at)?.shards ?? 0
    })
  })

/**
 * The drain's progress every `everyMs` while it changes, ending once the runner holds no
 * instance and no shard.
 *
 * @since 0.10.0
 */
export const follow = (registry: Registry["Service"], at: string, everyMs = 250) =>
  Stream.fromEffectSchedule(progress(registry, at), Schedule.spaced(everyMs)).pipe(
    Stream.changesWith((a, b) => a.instances === b.instances && a.shards === b.shards),
    Stream.takeUntil((p) => p.instances === 0 && p.shards === 0)
  )
