/**
 * The pace at which a drained runner hands its processes over.
 *
 * A drain (see `client/Drain`) makes every participant leave the runner out of its hash rings at
 * once, so Effect's Sharding releases all its shards together. Left alone, every process of the
 * runner would stop at the same moment and wait for its next owner. Instead, an `Instance`
 * entity whose shard is leaving a draining runner asks its `Handover` for a slot before it stops
 * its process, and keeps the slot until the instance runs on its new runner (or the wait gives
 * up): at most the drain's `parallel` instances are between two runners at any time, and the
 * others keep running here meanwhile.
 *
 * Slots are per shard, not per instance: a shard is given up (and taken by its next owner) only
 * once every entity on it finished, so the entities of one shard share one slot; a slot per
 * instance could let one instance of a shard wait for its move while holding the last slot
 * another instance of the same shard needs before the shard can move at all.
 *
 * Off a drain (a rebalance, a graceful shutdown) there is no pacing: the stop runs at once.
 *
 * @since 0.10.0
 */
import { Context, Deferred, Effect, Layer, Semaphore } from "effect"

/**
 * @since 0.10.0
 */
export class Handover extends Context.Service<Handover, {
  /**
   * Runs `stop` (the end of a process whose shard leaves this runner) when the drain's pace
   * allows, then keeps the shard's slot until `moved` (the instance runs elsewhere) ends.
   */
  readonly pace: (shard: string, stop: Effect.Effect<void>, moved: Effect.Effect<void>) => Effect.Effect<void>
  /**
   * Whether this runner is drained, and how many shards may move at once: told by the runner
   * list (`CrashDetection`) in the same read that makes every participant leave it out, so it is
   * known before any of its shards is released — and never read by a stop itself (a shard
   * release must not wait for the store, which may be what is failing).
   */
  readonly observe: (parallel: number | undefined) => Effect.Effect<void>
}>()("shardhub/Handover") {}

interface Slot {
  readonly taken: Deferred.Deferred<void>
  users: number
}

/**
 * @since 0.10.0
 */
export const layer = Layer.effect(
  Handover,
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const slots = yield* Semaphore.make(1)
    let permits = 1
    let draining: number | undefined
    const shards = new Map<string, Slot>()

    const slotOf = (shard: string) =>
      Effect.gen(function*() {
        const found = shards.get(shard)
        if (found !== undefined) {
          found.users++
          return found
        }
        const slot: Slot = { taken: yield* Deferred.make<void>(), users: 1 }
        shards.set(shard, slot)
        yield* slots.take(1).pipe(Effect.andThen(Deferred.succeed(slot.taken, undefined)), Effect.forkIn(scope))
        return slot
      })

    const leave = (shard: string, slot: Slot) =>
      Effect.suspend(() => {
        slot.users--
        if (slot.users > 0) return Effect.void
        shards.delete(shard)
        return slots.release(1)
      })

    return Handover.of({
      pace: (shard, stop, moved) =>
        Effect.gen(function*() {
          if (draining === undefined) return yield* stop
          const slot = yield* slotOf(shard)
          yield* Deferred.await(slot.taken)
          yield* stop
          yield* moved.pipe(Effect.ensuring(leave(shard, slot)), Effect.forkIn(scope))
        }).pipe(Effect.uninterruptible),
      observe: (parallel) =>
        Effect.suspend(() => {
          draining = parallel
          if (parallel === undefined || parallel === permits) return Effect.void
          permits = parallel
          return Semaphore.resize(slots, parallel)
        })
    })
  })
)
