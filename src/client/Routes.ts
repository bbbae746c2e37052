/**
 * Which `Instance` entity serves an instance id: `<id>` for an instance without a placement
 * requirement, `<id>@<group>` for a placed one (see `instance/Placement`).
 *
 * A client reads it from the instance's record once and keeps it: an instance's placement never
 * changes while its record lives. An id removed and started again elsewhere may leave a stale
 * route; the entity it names refuses a record of another group (as unknown), and the caller
 * asks again ({@link InstanceRoutes.forget}). Unknown ids route to the plain id, whose entity
 * answers that it does not know them.
 *
 * @since 0.10.0
 */
import { Context, Effect, Layer } from "effect"
import { requirementKey } from "../base/Labels.ts"
import type { InstanceSpec } from "../instance/InstanceSpec.ts"
import { defaultGroup, entityIdOf } from "../instance/Placement.ts"
import { PlacementGroups } from "../instance/PlacementGroups.ts"
import { Registry } from "../instance/Registry.ts"
import type { RegistryError } from "../instance/InstanceErrors.ts"

/** Routes kept at most; past it the oldest go first. */
const maxRoutes = 100_000

/**
 * @since 0.10.0
 */
export class InstanceRoutes extends Context.Service<InstanceRoutes, {
  /** The entity id of instance `id`, and whether it came from memory (and may be stale). */
  readonly of: (id: string) => Effect.Effect<{ readonly entityId: string; readonly remembered: boolean }, RegistryError>
  /** The entity id of an instance of `spec` (its placement group created if it is new). */
  readonly forSpec: (id: string, spec: InstanceSpec) => Effect.Effect<{ readonly entityId: string; readonly group: string }, RegistryError>
  /** Forgets the route of `id` (it was refused as stale). */
  readonly forget: (id: string) => void
}>()("shardhub/InstanceRoutes") {}

/**
 * @since 0.10.0
 */
export const make = Effect.gen(function*() {
  const registry = yield* Registry
  const groups = yield* PlacementGroups
  const routes = new Map<string, string>()
  const remember = (id: string, entityId: string) => {
    if (routes.size >= maxRoutes) routes.delete(routes.keys().next().value!)
    routes.set(id, entityId)
  }
  const groupOfSpec = (spec: InstanceSpec, create: boolean) =>
    Effect.map(groups.groupOf(requirementKey(spec.placement?.on), { create }), (group) => group ?? defaultGroup)
  return InstanceRoutes.of({
    of: (id) =>
      Effect.suspend(() => {
        const known = routes.get(id)
        if (known !== undefined) return Effect.succeed({ entityId: known, remembered: true })
        return registry.get(id).pipe(
          Effect.flatMap((info) => groupOfSpec(info.spec, false)),
          Effect.map((group) => {
            const entityId = entityIdOf(id, group)
            remember(id, entityId)
            return { entityId, remembered: false }
          }),
          // Unknown here: its plain entity answers so.
          Effect.catchTag("InstanceNotFound", () => Effect.succeed({ entityId: id, remembered: false }))
        )
      }),
    forSpec: (id, spec) =>
      Effect.map(groupOfSpec(spec, true), (group) => {
        const entityId = entityIdOf(id, group)
        remember(id, entityId)
        return { entityId, group }
      }),
    forget: (id) => {
      routes.delete(id)
    }
  })
})

/**
 * @since 0.10.0
 */
export const layer: Layer.Layer<InstanceRoutes, never, Registry | PlacementGroups> = Layer.effect(InstanceRoutes, make)
