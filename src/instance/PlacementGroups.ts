/**
 * The placement groups of the cluster (see `Placement`): one shard group per requirement, kept in
 * `shardhub_placement_groups` and named by the order they were created (`p0001`, `p0002`, …,
 * numbered without gaps).
 *
 * Why by order: Effect's `SqlRunnerStorage` numbers each shard's advisory lock by the position of
 * its group in the sorted list of groups a participant knows. Names that sort in creation order
 * (after `default`) keep every known group at its position when a new one is added, so two
 * participants that know different numbers of groups still agree on every lock they share.
 *
 * The table only grows, so a participant keeps what it read. At most 1000 groups: a shard's
 * lock number is `(position + 1) × 1 000 000 + shard`, and Postgres takes it as a 32-bit integer.
 *
 * @since 0.10.0
 */
import { Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { RegistryError } from "./InstanceErrors.ts"
import { type Labels, subsets } from "../base/Labels.ts"
import { defaultGroup } from "./Placement.ts"

/** The most placement groups a cluster may have (see above). */
const maxGroups = 1000

/**
 * @since 0.10.0
 */
export class PlacementGroups extends Context.Service<PlacementGroups, {
  /**
   * The group of a requirement (a canonical string, `""` for none: `default`); created when
   * `create`, else `undefined` for a requirement nobody has asked for or served yet.
   */
  readonly groupOf: (requirement: string, options?: { readonly create?: boolean }) => Effect.Effect<string | undefined, RegistryError>
  /** The requirement of a group (`""` for `default`). */
  readonly requirementOf: (group: string) => Effect.Effect<string | undefined, RegistryError>
  /**
   * The groups a runner with `labels` serves (`default` and one per subset, created as needed),
   * and every group up to the last of them, in order (the positions its shard locks are
   * numbered by).
   */
  readonly forRunner: (labels: Labels) => Effect.Effect<{
    readonly assigned: ReadonlyArray<string>
    readonly available: ReadonlyArray<string>
  }, RegistryError>
}>()("shardhub/PlacementGroups") {}

/** A group as stored: its number, its name (`p` and the number, from the table), its requirement. */
interface Row {
  readonly n: number
  readonly name: string
  readonly requirement: string
}

const storeError = (error: SqlError) => new RegistryError({ message: `cluster store: ${error.message}` })

/**
 * @since 0.10.0
 */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient
  const byRequirement = new Map<string, string>([["", defaultGroup]])
  const byGroup = new Map<string, string>([[defaultGroup, ""]])
  const remember = (rows: ReadonlyArray<Row>) => {
    for (const row of rows) {
      byRequirement.set(row.requirement, row.name)
      byGroup.set(row.name, row.requirement)
    }
  }
  const readAll = sql<Row>`SELECT n, name, requirement FROM shardhub_placement_groups ORDER BY n`.pipe(
    Effect.tap((rows) => Effect.sync(() => remember(rows)))
  )
  /**
   * Creates the group of `requirement`, numbered after the last one. One creation at a time (a
   * table lock held to the commit), so no participant can ever see a group without every group
   * numbered before it: their positions would differ from another participant's.
   */
  const create = (requirement: string) =>
    sql.withTransaction(Effect.gen(function*() {
      yield* sql`LOCK TABLE shardhub_placement_groups IN SHARE ROW EXCLUSIVE MODE`
      const rows = yield* sql<Row>`
        SELECT n, name, requirement FROM shardhub_placement_groups WHERE requirement = ${requirement}`
      if (rows.length > 0) return remember(rows)
      const [last] = yield* sql<{ n: number }>`SELECT COALESCE(max(n), 0)::int AS n FROM shardhub_placement_groups`
      if (last!.n >= maxGroups) return yield* new RegistryError({ message: `the cluster has ${maxGroups} placement groups, the most it may have` })
      remember(yield* sql<Row>`
        INSERT INTO shardhub_placement_groups (n, requirement) VALUES (${last!.n + 1}, ${requirement}) RETURNING n, name, requirement`)
    }))

  const groupOf = (requirement: string, options?: { readonly create?: boolean }) =>
    Effect.gen(function*() {
      const known = byRequirement.get(requirement)
      if (known !== undefined) return known
      remember(yield* sql<Row>`
        SELECT n, name, requirement FROM shardhub_placement_groups WHERE requirement = ${requirement}`)
      if (!byRequirement.has(requirement) && options?.create === true) yield* create(requirement)
      return byRequirement.get(requirement)
    }).pipe(Effect.catchTag("SqlError", (error) => Effect.fail(storeError(error))))

  return PlacementGroups.of({
    groupOf,
    requirementOf: (group) =>
      Effect.gen(function*() {
        if (!byGroup.has(group)) yield* readAll
        return byGroup.get(group)
      }).pipe(Effect.catchTag("SqlError", (error) => Effect.fail(storeError(error)))),
    forRunner: (labels) =>
      Effect.gen(function*() {
        const assigned = [defaultGroup]
        for (const requirement of subsets(labels)) assigned.push((yield* groupOf(requirement, { create: true }))!)
        const all = yield* readAll.pipe(Effect.catchTag("SqlError", (error) => Effect.fail(storeError(error))))
        const last = Math.max(0, ...all.filter((row) => assigned.includes(row.name)).map((row) => row.n))
        return { assigned, available: [defaultGroup, ...all.filter((row) => row.n <= last).map((row) => row.name)] }
      })
  })
})

/**
 * @since 0.10.0
 */
export const layer: Layer.Layer<PlacementGroups, never, SqlClient> = Layer.effect(PlacementGroups, make)
