/**
 * Placement: runners carry labels (`gpu=true`, `zone=a`); an instance may require some
 * (`placement.on`), and then runs only on a runner that has them all — before and after a
 * failover or a drain.
 *
 * It is built on Effect cluster's shard groups, so ownership and placement cannot disagree:
 *
 * - every requirement is a **placement group** (`store/PlacementGroups`), a shard group named
 *   `p0001`, `p0002`, … in the order the groups were created;
 * - a runner serves the `default` group and the group of every requirement its labels meet (it
 *   creates the groups of all its label subsets as it starts, so no group can appear later that
 *   a running runner should have served);
 * - the `Instance` entity of a placed instance has the id `<instance id>@<group>`: its shard is a
 *   shard of that group, held only by a runner that meets the requirement. An instance without a
 *   requirement keeps its plain id, in the `default` group.
 *
 * Instance ids cannot contain `@`, so the entity id says both.
 *
 * @since 0.10.0
 */
import { Schema } from "effect"
import { Labels } from "../base/Labels.ts"

/** The shard group of instances without a requirement. */
export const defaultGroup = "default"

/**
 * Where an instance may run: on a runner with every label of `on`.
 *
 * @since 0.10.0
 */
export const Placement = Schema.Struct({ on: Labels })
/** @since 0.10.0 */
export type Placement = typeof Placement.Type

/**
 * The entity id of instance `id` in shard group `group`.
 *
 * @since 0.10.0
 */
export const entityIdOf = (id: string, group: string): string => group === defaultGroup ? id : `${id}@${group}`

/**
 * The instance id of an `Instance` entity id.
 *
 * @since 0.10.0
 */
export const instanceIdOf = (entityId: string): string => {
  const at = entityId.indexOf("@")
  return at < 0 ? entityId : entityId.slice(0, at)
}

/**
 * The shard group of an `Instance` entity id.
 *
 * @since 0.10.0
 */
export const groupOf = (entityId: string): string => {
  const at = entityId.indexOf("@")
  return at < 0 ? defaultGroup : entityId.slice(at + 1)
}
