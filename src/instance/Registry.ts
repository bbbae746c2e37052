/**
 * The instance registry: the durable record of every instance in the cluster store
 * (`shardhub_instances`). It is what makes `list` work across runners, lets info outlive the
 * process, and tells a runner that takes a shard over which instances to bring back.
 *
 * Two guards make it safe under Effect cluster's at-least-once delivery and lease-timed (not
 * fenced) ownership:
 * - **start key**: a start carries a key (its request's primary key). A re-delivered start with
 *   the same key finds its own row and succeeds again; a different start of the same id fails
 *   with `InstanceAlreadyExists`.
 * - **epoch**: every runner that takes an instance over {@link Registry.claim}s it, which bumps
 *   the epoch. Status reports carry the epoch they were claimed with, so a runner that lost the
 *   instance (and does not know it yet) cannot overwrite the new owner's record.
 *
 * @since 0.3.0
 */
import { Context, Duration, Effect, Layer, Option, Schedule, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { type Labels, requirementKey } from "../base/Labels.ts"
import { InstanceAlreadyExists, InstanceNotFound, RegistryError } from "./InstanceErrors.ts"
import { type Desired, InstanceId, type InstanceInfo, InstanceSpec, type InstanceStatus } from "./InstanceSpec.ts"

/**
 * What the owner of an instance reports about its process. Absent fields are left as they are;
 * `null` clears one.
 *
 * @since 0.3.0
 */
export interface Report {
  readonly desired?: Desired
  readonly status?: InstanceStatus
  readonly pid?: number | null
  readonly restarts?: number
  readonly startedAt?: number | null
  readonly endedAt?: number | null
  readonly exitCode?: number | null
  readonly signal?: string | null
  readonly reason?: string | null
  readonly crashLog?: ReadonlyArray<string>
  readonly nextTickAt?: number | null
}

/**
 * @since 0.3.0
 */
export class Registry extends Context.Service<Registry, {
  /**
   * Records a new instance (desired `running`, status `starting`), already claimed (epoch 1)
   * when `runner` is given, or `pending` with `pending` as its reason (no runner meets its
   * placement yet). The same `startKey` again returns the existing record with `created: false`.
   */
  readonly create: (
    id: string,
    spec: InstanceSpec,
    startKey: string,
    runner?: string,
    pending?: string
  ) => Effect.Effect<{ readonly info: InstanceInfo; readonly created: boolean }, InstanceAlreadyExists | RegistryError>
  /**
   * Calls off a start of `id` with `startKey` that got no answer: registers it as stopped, so a
   * start message still on its way finds it ended and runs nothing. `undefined` when it was
   * called off; otherwise the record that was there first (and whether that start was this one).
   */
  readonly cancelStart: (
    id: string,
    spec: InstanceSpec,
    startKey: string
  ) => Effect.Effect<{ readonly info: InstanceInfo; readonly sameStart: boolean } | undefined, RegistryError>
  readonly get: (id: string) => Effect.Effect<InstanceInfo, InstanceNotFound | RegistryError>
  /** Every instance, newest first; optionally only those with one of `statuses`. */
  readonly list: (options?: {
    readonly statuses?: ReadonlyArray<InstanceStatus>
  }) => Effect.Effect<ReadonlyArray<InstanceInfo>, RegistryError>
  /**
   * Takes the instance over for `runner`: bumps and returns the epoch to report with. A live
   * instance goes back to `starting` (no pid) until the new owner reports its process.
   */
  readonly claim: (id: string, runner: string) => Effect.Effect<InstanceInfo, InstanceNotFound | RegistryError>
  /**
   * Ends a `pending` instance (no runner ever ran it): stopped, or forgotten with `remove`. `None`
   * when it is not pending (a runner took it meanwhile: ask that runner).
   */
  readonly endPending: (id: string, options: { readonly remove: boolean }) => Effect.Effect<Option.Option<InstanceInfo>, RegistryError>
  /**
   * Applies a report and answers the record as stored; `None` when another runner claimed the
   * instance since `epoch`. Idempotent: safe to repeat.
   */
  readonly report: (id: string, epoch: number, report: Report) => Effect.Effect<Option.Option<InstanceInfo>, RegistryError>
  readonly setDesired: (id: string, desired: Desired) => Effect.Effect<InstanceInfo, InstanceNotFound | RegistryError>
  /** Forgets an instance. */
  readonly remove: (id: string) => Effect.Effect<void, RegistryError>
  /** Deletes ended instances that ended before `before` (ms since the epoch); returns their ids. */
  readonly purgeEnded: (before: number) => Effect.Effect<ReadonlyArray<string>, RegistryError>
  /**
   * Every instance that should have a process (desired `running`, neither ended nor
   * `scheduled`), with its placement requirement (a canonical string, `""` for none): what the
   * holder of each one's shard brings up (see `Activator`).
   */
  readonly toRun: Effect.Effect<ReadonlyArray<{ readonly id: string; readonly requirement: string }>, RegistryError>
}>()("shardhub/Registry") {}

const isInstanceId = Schema.is(InstanceId)

interface Row {
  readonly id: string
  readonly name: string | null
  readonly spec: unknown
  readonly desired: Desired
  readonly status: InstanceStatus
  readonly runner: string | null
  readonly pid: number | null
  readonly epoch: string | number
  readonly restarts: number
  readonly created_at: Date
  readonly started_at: Date | null
  readonly ended_at: Date | null
  readonly exit_code: number | null
  readonly signal: string | null
  readonly reason: string | null
  readonly crash_log: ReadonlyArray<string>
  readonly next_tick_at: Date | null
  readonly start_key?: string
}

const decodeSpec = Schema.decodeUnknownSync(InstanceSpec)

const toInfo = (row: Row): InstanceInfo => ({
  id: row.id,
  ...(row.name === null ? {} : { name: row.name }),
  spec: decodeSpec(row.spec),
  desired: row.desired,
  status: row.status,
  ...(row.runner === null ? {} : { runner: row.runner }),
  ...(row.pid === null ? {} : { pid: row.pid }),
  epoch: Number(row.epoch),
  restarts: row.restarts,
  createdAt: row.created_at.getTime(),
  ...(row.started_at === null ? {} : { startedAt: row.started_at.getTime() }),
  ...(row.ended_at === null ? {} : { endedAt: row.ended_at.getTime() }),
  ...(row.exit_code === null ? {} : { exitCode: row.exit_code }),
  ...(row.signal === null ? {} : { signal: row.signal }),
  ...(row.reason === null ? {} : { reason: row.reason }),
  ...(row.next_tick_at === null ? {} : { nextTickAt: row.next_tick_at.getTime() }),
  crashLog: row.crash_log
})

const storeError = (error: SqlError) => new RegistryError({ message: `cluster store: ${error.message}` })

const date = (ms: number | null | undefined) => (ms === null || ms === undefined ? ms : new Date(ms))

/**
 * The registry on the cluster store's `SqlClient`.
 *
 * @since 0.3.0
 */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient
  const one = (rows: ReadonlyArray<Row>, id: string) =>
    rows.length === 0 ? Effect.fail(new InstanceNotFound({ id })) : Effect.succeed(toInfo(rows[0]!))

  return Registry.of({
    create: (id, spec, startKey, runner, pending) =>
      Effect.gen(function*() {
        const inserted = yield* sql<Row>`
          INSERT INTO shardhub_instances (id, name, spec, start_key, desired, status, runner, epoch, reason)
          VALUES (${id}, ${spec.name ?? null}, ${JSON.stringify(spec)}::jsonb, ${startKey}, 'running',
            ${pending === undefined ? "starting" : "pending"}, ${runner ?? null}, ${runner === undefined ? 0 : 1}, ${pending ?? null})
          ON CONFLICT (id) DO NOTHING
          RETURNING *`
        if (inserted.length > 0) return { info: toInfo(inserted[0]!), created: true }
        const existing = yield* sql<Row>`SELECT * FROM shardhub_instances WHERE id = ${id}`
        if (existing.length > 0 && existing[0]!.start_key === startKey) {
          return { info: toInfo(existing[0]!), created: false }
        }
        return yield* new InstanceAlreadyExists({ id })
      }).pipe(Effect.catchTag("SqlError", (error) => Effect.fail(storeError(error)))),
    cancelStart: (id, spec, startKey) =>
      Effect.gen(function*() {
        const inserted = yield* sql<Row>`
          INSERT INTO shardhub_instances (id, name, spec, start_key, desired, status, epoch, ended_at, reason)
          VALUES (${id}, ${spec.name ?? null}, ${JSON.stringify(spec)}::jsonb, ${startKey}, 'stopped', 'stopped', 0,
            now(), 'the start got no answer in time and was called off')
          ON CONFLICT (id) DO NOTHING
          RETURNING id`
        if (inserted.length > 0) return undefined
        const existing = yield* sql<Row>`SELECT * FROM shardhub_instances WHERE id = ${id}`
        return { info: toInfo(existing[0]!), sameStart: existing[0]!.start_key === startKey }
      }).pipe(Effect.catchTag("SqlError", (error) => Effect.fail(storeError(error)))),
    get: (id) =>
      // An id that could not have been given is unknown (and never reaches the store).
      !isInstanceId(id) ? Effect.fail(new InstanceNotFound({ id })) : sql<Row>`SELECT * FROM shardhub_instances WHERE id = ${id}`.pipe(
        Effect.mapError(storeError),
        Effect.flatMap((rows) => one(rows, id))
      ),
    list: (options) =>
      (options?.statuses === undefined
        ? sql<Row>`SELECT * FROM shardhub_instances ORDER BY created_at DESC, id`
        : options.statuses.length === 0
        ? Effect.succeed([])
        : sql<Row>`SELECT * FROM shardhub_instances WHERE ${sql.in("status", options.statuses)} ORDER BY created_at DESC, id`)
        .pipe(Effect.mapError(storeError), Effect.map((rows) => rows.map(toInfo))),
    toRun: sql<{ readonly id: string; readonly placement: Labels | null }>`
      SELECT id, spec->'placement'->'on' AS placement FROM shardhub_instances
      WHERE desired = 'running' AND status IN ('pending', 'starting', 'running', 'stopping')`.pipe(
      Effect.mapError(storeError),
      Effect.map((rows) => rows.map((row) => ({ id: row.id, requirement: requirementKey(row.placement ?? undefined) })))
    ),
    endPending: (id, options) =>
      (options.remove
        ? sql<Row>`DELETE FROM shardhub_instances WHERE id = ${id} AND status = 'pending' AND epoch = 0 RETURNING *`
        : sql<Row>`UPDATE shardhub_instances SET desired = 'stopped', status = 'stopped', ended_at = now(),
            reason = 'stopped while pending'
          WHERE id = ${id} AND status = 'pending' AND epoch = 0 RETURNING *`).pipe(
        Effect.map((rows) => rows.length === 0 ? Option.none() : Option.some(toInfo(rows[0]!))),
        Effect.mapError(storeError)
      ),
    claim: (id, runner) =>
      sql<Row>`UPDATE shardhub_instances
        SET epoch = epoch + 1, runner = ${runner},
          status = CASE WHEN status IN ('stopped', 'crashed') THEN status ELSE 'starting' END,
          pid = CASE WHEN status IN ('stopped', 'crashed') THEN pid ELSE NULL END
        WHERE id = ${id} RETURNING *`.pipe(
        Effect.mapError(storeError),
        Effect.flatMap((rows) => one(rows, id))
      ),
    report: (id, epoch, report) => {
      const set: Record<string, unknown> = {}
      if (report.desired !== undefined) set["desired"] = report.desired
      if (report.status !== undefined) set["status"] = report.status
      if (report.pid !== undefined) set["pid"] = report.pid
      if (report.restarts !== undefined) set["restarts"] = report.restarts
      if (report.startedAt !== undefined) set["started_at"] = date(report.startedAt)
      if (report.endedAt !== undefined) set["ended_at"] = date(report.endedAt)
      if (report.exitCode !== undefined) set["exit_code"] = report.exitCode
      if (report.signal !== undefined) set["signal"] = report.signal
      if (report.reason !== undefined) set["reason"] = report.reason
      if (report.crashLog !== undefined) set["crash_log"] = JSON.stringify(report.crashLog)
      if (report.nextTickAt !== undefined) set["next_tick_at"] = date(report.nextTickAt)
      if (Object.keys(set).length === 0) {
        return sql<Row>`SELECT * FROM shardhub_instances WHERE id = ${id} AND epoch = ${epoch}`.pipe(
          Effect.mapError(storeError),
          Effect.map((rows) => rows.length === 0 ? Option.none() : Option.some(toInfo(rows[0]!)))
        )
      }
      return sql<Row>`UPDATE shardhub_instances SET ${sql.update(set)} WHERE id = ${id} AND epoch = ${epoch} RETURNING *`.pipe(
        Effect.mapError(storeError),
        Effect.map((rows) => rows.length === 0 ? Option.none() : Option.some(toInfo(rows[0]!)))
      )
    },
    setDesired: (id, desired) =>
      sql<Row>`UPDATE shardhub_instances SET desired = ${desired} WHERE id = ${id} RETURNING *`.pipe(
        Effect.mapError(storeError),
        Effect.flatMap((rows) => one(rows, id))
      ),
    remove: (id) => sql`DELETE FROM shardhub_instances WHERE id = ${id}`.pipe(Effect.mapError(storeError), Effect.asVoid),
    purgeEnded: (before) =>
      sql<{ id: string }>`
        DELETE FROM shardhub_instances
        WHERE ended_at IS NOT NULL AND ended_at < ${new Date(before)} AND status IN ('stopped', 'crashed')
        RETURNING id`.pipe(Effect.mapError(storeError), Effect.map((rows) => rows.map((row) => row.id)))
  })
})

/**
 * @since 0.3.0
 */
export const layer: Layer.Layer<Registry, never, SqlClient> = Layer.effect(Registry, make)

/**
 * Forgets ended instances once they have been ended for `retention`, checking every
 * `interval`. Runs forever; a runner runs it as a cluster singleton.
 *
 * @since 0.3.0
 */
export const purgeEvery = (retention: Duration.Duration, interval: Duration.Input = "30 seconds") =>
  Effect.gen(function*() {
    const registry = yield* Registry
    yield* registry.purgeEnded(Date.now() - Duration.toMillis(retention)).pipe(
      Effect.tap((ids) => ids.length === 0 ? Effect.void : Effect.logInfo(`forgot ${ids.length} ended instances`)),
      Effect.catchTag("RegistryError", (error) => Effect.logWarning(error.message)),
      Effect.repeat(Schedule.spaced(interval))
    )
  })
