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
import { Context, Deferred, Effect, Layer, Schedule, Semaphore } from "effect"
import { SqlClient } from "effect/sql/SqlClient"

/**
 * @since 0.10.0
 */
export class Handover extends Context.Service<Handover, {
  /**
   * Runs `stop` (the end of a process whose shard leaves this runner) when the drain's pace
   * allows, then keeps the shard's slot until `moved` (the instance runs elsewhere) ends.
   */
  readonly pace: (shard: string, stop: Effect.Effect<void>, moved: Effect.Effect<void>) => Effect.Effect<void>
}>()("shardhub/Handover") {}

/** How often this runner's drain row is read, in the background. */
const pollMs = 500

interface Slot {
  readonly taken: Deferred.Deferred<void>
  users: number
}

/**
 * The handover of the runner at `address` (`host:port`, as in `shardhub_drains`).
 *
 * @since 0.10.0
 */
export const layer = (address: string) =>
  Layer.effect(
    Handover,
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const scope = yield* Effect.scope
      const slots = yield* Semaphore.make(1)
      let permits = 1
      // This runner's drain parallelism, or `undefined` when it is not drained. Read in the
      // background, never by a stop: a shard release must not wait for the store (it may be
      // what is failing), and hundreds of entities stop at once.
      let draining: number | undefined
      const shards = new Map<string, Slot>()
      yield* sql<{ readonly parallel: number }>`SELECT parallel FROM shardhub_drains WHERE address = ${address}`.pipe(
        Effect.tap((rows) =>
          Effect.gen(function*() {
            draining = rows[0]?.parallel
            if (draining !== undefined && draining !== permits) {
              permits = draining
              yield* Semaphore.resize(slots, draining)
            }
          })
        ),
        // Not knowing keeps the last answer.
        Effect.ignore,
        Effect.repeat(Schedule.spaced(pollMs)),
        Effect.forkIn(scope)
      )

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
          }).pipe(Effect.uninterruptible)
      })
    })
  )
