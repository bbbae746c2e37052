/**
 * `HostClient`: the cluster-wide view of instances — list them, start one, read one's record.
 *
 * `list` and `get` read the registry in the cluster store directly (they work even while an
 * instance's runner is down); `start` asks the `Instance` entity, which lands on the runner that
 * owns the new id's shard.
 *
 * @since 0.3.0
 */
import type { Sharding } from "effect/cluster/Sharding"
import { Context, Duration, Effect, Layer, Schema } from "effect"
import * as Crypto from "node:crypto"
import { Instance } from "../instance/Instance.ts"
import { InvalidSpec } from "../instance/InstanceErrors.ts"
import { InstanceId, type InstanceSpec, type InstanceStatus } from "../instance/InstanceSpec.ts"
import { Registry } from "../instance/Registry.ts"
import { CallTimeout, type Options, retryMoved } from "./InstanceClient.ts"

const isInstanceId = Schema.is(InstanceId)

/**
 * @since 0.3.0
 */
export const make = (options: Options = {}) =>
  Effect.gen(function*() {
    const clients = yield* Instance.client
    const registry = yield* Registry
    const timeoutMs = options.timeoutMs ?? 10_000
    return {
      /** Every instance in the cluster, newest first; optionally only those in `statuses`. */
      list: (filter?: { readonly statuses?: ReadonlyArray<InstanceStatus> }) => registry.list(filter),
      /** The record of one instance. */
      get: (id: string) => registry.get(id),
      /**
       * Starts an instance of `spec` (with a new UUID unless `id` is given) and answers once its
       * process runs. Safe to retry: the call carries one start key, so a re-delivered start never
       * runs a second process.
       */
      start: (spec: InstanceSpec, start: { readonly id?: string; readonly timeoutMs?: number } = {}) => {
        const id = start.id ?? Crypto.randomUUID()
        if (!isInstanceId(id)) {
          return Effect.fail(new InvalidSpec({ message: `invalid instance id ${JSON.stringify(id)}: use 1-128 letters, digits, '-', '_' or '.'` }))
        }
        const ms = start.timeoutMs ?? timeoutMs
        // One start key for every attempt: a repeat finds the instance it started.
        const startKey = Crypto.randomUUID()
        return retryMoved(Effect.suspend(() => clients(id).Start({ spec, startKey }))).pipe(
          Effect.timeoutOrElse({
            duration: Duration.millis(ms),
            orElse: () => Effect.fail(new CallTimeout({ id, operation: "start", timeoutMs: ms }))
          })
        )
      }
    }
  })

/**
 * @since 0.3.0
 */
export class HostClient extends Context.Service<HostClient, Effect.Success<ReturnType<typeof make>>>()(
  "shardhub/HostClient"
) {}

/**
 * @since 0.3.0
 */
export const layer = (options: Options = {}): Layer.Layer<HostClient, never, Sharding | Registry> =>
  Layer.effect(HostClient, make(options))
