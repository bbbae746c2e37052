/**
 * Brings instances up on the runner that holds their shard, from the registry: after a failover
 * or a handover (the shard was acquired here), after the whole cluster started again, and for
 * any instance that should run but whose entity is not resident here although its shard is
 * (an activation that failed, a start whose record landed after the shard moved).
 *
 * - Every `pollMs` it looks which of its shard groups' shards this runner holds. When it holds
 *   new ones, and at least every `sweepMs` anyway, it reads the instances that should run
 *   ({@link Registry.toRun}) and sends `Activate` (not persisted) to each one whose shard it
 *   holds and whose entity is not resident here. The entity's activation does the rest: it
 *   claims the instance (the epoch fences the previous owner out) and starts its process.
 * - Residency is what the `Instance` entities tell it ({@link Activator.resident}); an entity
 *   that is resident needs no activation, and keeps itself resident while it has a process (see
 *   `liveness/KeepAlive`).
 *
 * This replaces Effect's persisted keep-alive for bringing instances back: no store write per
 * start, and nothing in the message store to hand to the next owner.
 *
 * @since 0.11.0
 */
import { EntityId, ShardId } from "effect/cluster"
import { Sharding } from "effect/cluster/Sharding"
import { ShardingConfig } from "effect/cluster/ShardingConfig"
import { Context, Effect, Layer, Schedule, type Scope } from "effect"
import { Instance } from "./Instance.ts"
import { defaultGroup, entityIdOf } from "./Placement.ts"
import { PlacementGroups } from "./PlacementGroups.ts"
import { Registry } from "./Registry.ts"

/**
 * @since 0.11.0
 */
export class Activator extends Context.Service<Activator, {
  /** Counts the `Instance` entity `entityId` resident on this runner until the scope closes. */
  readonly resident: (entityId: string) => Effect.Effect<void, never, Scope.Scope>
}>()("shardhub/Activator") {}

/**
 * Tunables of the activator.
 *
 * @since 0.11.0
 */
export interface Options {
  /** How often the shards held are looked at. Default 50 ms. */
  readonly pollMs?: number
  /** How often the instances that should run are read even when no shard was acquired. Default 2 s. */
  readonly sweepMs?: number
  /** How many activations are sent at once. Default 32. */
  readonly concurrency?: number
}

/**
 * @since 0.11.0
 */
export const layer = (options: Options = {}) =>
  Layer.effect(
    Activator,
    Effect.gen(function*() {
      const sharding = yield* Sharding
      const config = yield* ShardingConfig
      const registry = yield* Registry
      const groups = yield* PlacementGroups
      const client = yield* Instance.client
      const scope = yield* Effect.scope
      const pollMs = options.pollMs ?? 50
      const sweepMs = options.sweepMs ?? 2000
      const residents = new Set<string>()
      const assigned = new Set(config.assignedShardGroups)
      const shards = config.assignedShardGroups.flatMap((group) =>
        Array.from({ length: config.shardsPerGroup }, (_, i) => ShardId.make(group, i + 1))
      )

      /** The shards held now (as strings), and whether any of them is new since the last look. */
      let held = new Set<string>()
      let acquired = false
      const lookAtShards = () => {
        const now = new Set<string>()
        for (const shard of shards) {
          if (!sharding.hasShardId(shard)) continue
          const key = ShardId.toString(shard)
          now.add(key)
          if (!held.has(key)) acquired = true
        }
        held = now
      }

      /** The entity ids of the instances that should run in a shard held here, not resident. */
      const missing = Effect.gen(function*() {
        const wanted: Array<string> = []
        const groupOf = new Map<string, string | undefined>([["", defaultGroup]])
        for (const { id, requirement } of yield* registry.toRun) {
          if (!groupOf.has(requirement)) groupOf.set(requirement, yield* groups.groupOf(requirement))
          const group = groupOf.get(requirement)
          if (group === undefined || !assigned.has(group)) continue
          const entityId = entityIdOf(id, group)
          if (residents.has(entityId) || !held.has(ShardId.toString(sharding.getShardId(EntityId.make(entityId), group)))) continue
          wanted.push(entityId)
        }
        return wanted
      })

      let lastSweep = 0
      const step = Effect.gen(function*() {
        lookAtShards()
        if (!acquired && performance.now() - lastSweep < sweepMs) return
        // Cleared first: a shard acquired while the registry is read is looked at next time. A
        // read that failed (the store out of reach) is tried again a second later.
        acquired = false
        lastSweep = performance.now()
        const wanted = yield* missing.pipe(Effect.tapError(() => Effect.sync(() => (lastSweep -= Math.max(0, sweepMs - 1000)))))
        // Not waited for: an activation lasts as long as its start (a sequence's readiness).
        // One under way is resident already, so it is not sent again.
        yield* Effect.forEach(
          wanted,
          (entityId) => client(entityId).Activate(undefined, { discard: true }).pipe(Effect.ignore),
          { concurrency: options.concurrency ?? 32, discard: true }
        ).pipe(Effect.forkIn(scope))
      })

      yield* step.pipe(
        Effect.catchCause((cause) => Effect.logDebug("instances to activate not read yet", cause)),
        Effect.repeat(Schedule.spaced(pollMs)),
        Effect.forkScoped
      )

      return Activator.of({
        resident: (entityId) =>
          Effect.acquireRelease(
            Effect.sync(() => residents.add(entityId)),
            () => Effect.sync(() => residents.delete(entityId))
          ).pipe(Effect.asVoid)
      })
    })
  )
