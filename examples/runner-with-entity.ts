/**
 * A runner that hosts a user's own entity, `Counter`, next to shardhub's `Instance`.
 * Run it like `npm start` (same environment variables): node examples/runner-with-entity.ts
 */
import { NodeRuntime } from "@effect/platform-node"
import { Entity } from "effect/cluster"
import { Effect, Layer, Schema } from "effect"
import { Rpc } from "effect/rpc"
import { Runner } from "shardhub"

/** A counter per entity id. */
export const Counter = Entity.make("Counter", [
  Rpc.make("Increment", { payload: { by: Schema.Int }, success: Schema.Int })
])

const CounterLive = Counter.toLayer(Effect.gen(function*() {
  let count = 0
  return Counter.of({
    Increment: ({ payload }) => Effect.sync(() => (count += payload.by))
  })
}))

if (import.meta.main) {
  Layer.launch(Runner.layerFromEnv({ entities: CounterLive })).pipe(NodeRuntime.runMain)
}
