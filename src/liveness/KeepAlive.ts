/**
 * Effect's entity keep-alive (`Entity.keepAlive`) as a function an entity can call at any time
 * of its life — from a stream, a finalizer or a forked fiber — not only while its layer is being
 * built, where Effect provides the services it needs.
 *
 * @since 0.6.0
 */
import { Entity } from "effect/cluster"
import type { Sharding } from "effect/cluster/Sharding"
import { Context, Effect, Option } from "effect"

/**
 * Captures what the keep-alive needs from the entity's construction; the result turns it on or
 * off (a no-op where the entity has no keep-alive latch).
 *
 * @since 0.6.0
 */
export const make = Effect.gen(function*() {
  const context = yield* Effect.context<Sharding | Entity.CurrentAddress>()
  const latch = yield* Effect.serviceOption(Entity.KeepAliveLatch)
  return (enabled: boolean): Effect.Effect<void> =>
    Option.isNone(latch)
      ? Effect.void
      : Entity.keepAlive(enabled).pipe(Effect.provideContext(Context.add(context, Entity.KeepAliveLatch, latch.value)))
})
