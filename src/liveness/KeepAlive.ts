/**
 * Residency of an entity without a store write: Effect's entity keep-alive (`Entity.keepAlive`)
 * sent as a volatile message to the entity itself, callable at any time of its life — from a
 * stream, a finalizer or a forked fiber — not only while its layer is being built.
 *
 * Effect's own keep-alive is a persisted request: one write per start (and one per end), and a
 * message the next owner of the shard is handed to bring the entity back. Here the request is
 * not persisted: it holds the entity's keep-alive latch on this runner only (the entity is never
 * passivated while it is held), and bringing an instance back on the next owner of its shard is
 * the `Activator`'s work, from the registry.
 *
 * @since 0.6.0
 */
import { ClusterSchema, Entity, Envelope, Message } from "effect/cluster"
import { Sharding } from "effect/cluster/Sharding"
import { Context, Effect, Option } from "effect"
import * as Headers from "effect/http/Headers"

/** The keep-alive request, not persisted. */
const annotations = Context.add(Entity.KeepAliveRpc.annotations, ClusterSchema.Persisted, false)

/**
 * Captures what the keep-alive needs from the entity's construction; the result turns it on or
 * off (a no-op where the entity has no keep-alive latch).
 *
 * @since 0.6.0
 */
export const make = Effect.gen(function*() {
  const sharding = yield* Sharding
  const address = yield* Entity.CurrentAddress
  const latch = yield* Effect.serviceOption(Entity.KeepAliveLatch)
  const scope = yield* Effect.scope
  if (Option.isNone(latch)) return (_enabled: boolean): Effect.Effect<void> => Effect.void
  // Sent by a fiber of its own: its delivery waits until the entity is built, and the entity's
  // construction (an activation's start) may be what holds the keep-alive.
  const send = Effect.gen(function*() {
    const requestId = yield* sharding.getSnowflake
    // Refused only while the shard leaves this runner: the entity goes with it anyway.
    yield* sharding.sendOutgoing(
      new Message.OutgoingRequest({
        annotations,
        rpc: Entity.KeepAliveRpc,
        context: Context.empty() as never,
        envelope: Envelope.makeRequest({
          requestId,
          address,
          tag: Entity.KeepAliveRpc._tag,
          payload: void 0,
          headers: Headers.empty,
          traceId: "",
          spanId: "",
          sampled: false
        }),
        lastReceivedReply: Option.none(),
        respond: () => Effect.void
      }),
      true
    ).pipe(Effect.ignore)
  })
  const hold = Effect.suspend(() => {
    latch.value.closeUnsafe()
    return Effect.asVoid(Effect.forkIn(send, scope))
  })
  return (enabled: boolean): Effect.Effect<void> => enabled ? hold : latch.value.open
})
