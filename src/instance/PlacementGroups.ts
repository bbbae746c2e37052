/**
 * The placement groups of the cluster (see `Placement`): one shard group per requirement, kept in
 * `shardhub_placement_groups` and named by the order they were created (`p0001`, `p0002`, …).
 *
 * Why by order: Effect's `SqlRunnerStorage` numbers each shard's advisory lock by the position of
 * its group in the sorted list of groups a participant knows. Names that sort in creation order
 * (after `default`) keep every known group at its position when a new one is added, so two
 * participants that know different numbers of groups still agree on every lock they share.
 *
 * The table only grows, so a participant keeps what it read. At most 9999 groups.
 *
 * @since 0.10.0
 */
import { Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { RegistryError } from "./InstanceErrors.ts"
import { type Labels, subsets } from "../base/Labels.ts"
import { defaultGroup } from "./Placement.ts"

/** The most placement groups a cluster may have (their names keep four digits). */
const maxGroups = 9999

const nameOf = (n: number) => `p${String(n).padStart(4, "0")}`

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
   * and every group known (for its shard locks), in order.
   */
  readonly forRunner: (labels: Labels) => Effect.Effect<{
    readonly assigned: ReadonlyArray<string>
    readonly available: ReadonlyArray<string>
  }, RegistryError>
}>()("shardhub/PlacementGroups") {}

const storeError = (error: SqlError) => new RegistryError({ message: `cluster store: ${error.message}` })

/**
 * @since 0.10.0
 */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient
  const byRequirement = new Map<string, string>([["", defaultGroup]])
  const byGroup = new Map<string, string>([[defaultGroup, ""]])
  const remember = (rows: ReadonlyArray<{ readonly n: number; readonly requirement: string }>) => {
    for (const row of rows) {
      byRequirement.set(row.requirement, nameOf(row.n))
      byGroup.set(nameOf(row.n), row.requirement)
    }
  }
  const readAll = sql<{ n: number; requirement: string }>`SELECT n, requirement FROM shardhub_placement_groups ORDER BY n`.pipe(
    Effect.tap((rows) => Effect.sync(() => remember(rows)))
  )
  const create = (requirement: string) =>
    Effect.gen(function*() {
      const counted = yield* sql<{ count: number }>`SELECT count(*)::int AS count FROM shardhub_placement_groups`
      if (counted[0]!.count >= maxGroups) return yield* new RegistryError({ message: `the cluster has ${maxGroups} placement groups, the most it may have` })
      remember(yield* sql<{ n: number; requirement: string }>`
        INSERT INTO shardhub_placement_groups (requirement) VALUES (${requirement})
        ON CONFLICT (requirement) DO UPDATE SET requirement = EXCLUDED.requirement
        RETURNING n, requirement`)
    })

  const groupOf = (requirement: string, options?: { readonly create?: boolean }) =>
    Effect.gen(function*() {
      const known = byRequirement.get(requirement)
      if (known !== undefined) return known
      remember(yield* sql<{ n: number; requirement: string }>`
        SELECT n, requirement FROM shardhub_placement_groups WHERE requirement = ${requirement}`)
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
        return { assigned, available: [defaultGroup, ...all.map((row) => nameOf(row.n))] }
      })
  })
})

/**
 * @since 0.10.0
 */
export const layer: Layer.Layer<PlacementGroups, never, SqlClient> = Layer.effect(PlacementGroups, make)
