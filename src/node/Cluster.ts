/**
 * The two ways to join a shardhub cluster, both on the cluster store:
 *
 * - {@link runnerLayer}: a runner. Listens on its runner address, registers in the store, holds
 *   shard locks and hosts the entities of its shards.
 * - {@link clientLayer}: a client-only participant (CLI, HTTP gateway, a user's app). Reads the
 *   runner list from the store, dials runners directly, hosts nothing.
 *
 * Both use Effect's SocketRunner protocol (binary serialization) over {@link Transport}'s
 * TCP_NODELAY sockets secured with the cluster key ({@link Security}, read from the store), and
 * `SqlRunnerStorage` / `SqlMessageStorage` on Postgres. Both layers also provide `Security`, for
 * the data port.
 *
 * @since 0.1.0
 */
import * as NodeCrypto from "@effect/platform-node/NodeCrypto"
import * as RunnerAddress from "effect/cluster/RunnerAddress"
import * as RunnerHealth from "effect/cluster/RunnerHealth"
import * as RunnerStorage from "effect/cluster/RunnerStorage"
import * as Runners from "effect/cluster/Runners"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import * as SocketRunner from "effect/cluster/SocketRunner"
import * as SqlRunnerStorage from "effect/cluster/SqlRunnerStorage"
import { Effect, Layer, Option } from "effect"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import { type ClusterConfig, clusterConfig, type RunnerConfig } from "../base/Config.ts"
import { parseLabels } from "../base/Labels.ts"
import * as PlacementGroups from "../instance/PlacementGroups.ts"
import * as Fence from "../liveness/Fence.ts"
import * as Handover from "../liveness/Handover.ts"
import * as CrashDetection from "../liveness/CrashDetection.ts"
import * as LockStorage from "../store/LockStorage.ts"
import * as MessageStore from "../store/MessageStore.ts"
import * as Security from "../transport/Security.ts"
import * as Store from "../store/Store.ts"
import * as Transport from "../transport/Transport.ts"

/**
 * Effect's `ShardingConfig` for a participant: shardhub's timings, and the runner address when
 * the participant is a runner.
 *
 * @since 0.1.0
 */
export const shardingConfig = (
  config: ClusterConfig,
  runner: Option.Option<RunnerConfig>
): Partial<ShardingConfig.ShardingConfig["Service"]> => ({
  shardsPerGroup: config.shardsPerGroup,
  runnerAddress: Option.map(runner, (r) => RunnerAddress.make(r.host, r.port)),
  runnerListenAddress: Option.flatMap(
    runner,
    (r) => Option.map(r.listenHost, (host) => RunnerAddress.make(host, r.port))
  ),
  ...config.timings
})

/**
 * Runner storage on the store, releasing shards one at a time (see {@link LockStorage}); when a
 * {@link Fence.Fence} is provided (a runner with a ProcessManager), every successful lock refresh
 * renews it.
 */
const runnerStorage = Layer.effect(
  RunnerStorage.RunnerStorage,
  Effect.gen(function*() {
    const config = yield* ShardingConfig.ShardingConfig
    const handover = yield* Effect.serviceOption(Handover.Handover)
    const self = Option.flatMap(config.runnerAddress, (address) =>
      Option.map(handover, (h) => ({ self: `${address.host}:${address.port}`, observe: h.observe })))
    const storage = yield* SqlRunnerStorage.make({}).pipe(
      Effect.flatMap(LockStorage.oneReleaseAtATime),
      Effect.flatMap((storage) => CrashDetection.detectingCrashes(storage, Option.getOrUndefined(self)))
    )
    const fence = yield* Effect.serviceOption(Fence.Fence)
    return Option.match(fence, { onNone: () => storage, onSome: (fence) => Fence.renewing(storage, fence) })
  })
)

/**
 * The sharding settings; a runner's shard groups are `default` and the placement groups its
 * labels meet (see `instance/Placement`), created as it starts.
 */
const shardingConfigLayer = (config: ClusterConfig, runner: Option.Option<RunnerConfig>) =>
  Option.match(runner, {
    onNone: () => ShardingConfig.layer(shardingConfig(config, runner)),
    onSome: (self) =>
      Layer.unwrap(Effect.gen(function*() {
        const labels = parseLabels([self.labels])
        if (typeof labels === "string") return yield* Effect.die(new Error(`runner labels: ${labels}`))
        const groups = yield* (yield* PlacementGroups.PlacementGroups).forRunner(labels).pipe(Effect.orDie)
        return ShardingConfig.layer({
          ...shardingConfig(config, runner),
          availableShardGroups: groups.available,
          assignedShardGroups: groups.assigned
        })
      })).pipe(Layer.provide(PlacementGroups.layer))
  })

const storage = (config: ClusterConfig, runner: Option.Option<RunnerConfig>) =>
  Layer.mergeAll(
    MessageStore.layer.pipe(Layer.provide(NodeCrypto.layerDigest)),
    Layer.orDie(runnerStorage)
  ).pipe(Layer.provideMerge(shardingConfigLayer(config, runner)))

const serialization = RpcSerialization.layerSchemaBinary()

/**
 * A runner: serves shards on `runner.host:runner.port`, on the store from `config`.
 *
 * @since 0.1.0
 */
export const runnerLayer = (config: ClusterConfig, runner: RunnerConfig, options: {
  readonly applicationName?: string | undefined
} = {}) => {
  const health = RunnerHealth.layerPing.pipe(
    Layer.provide(Runners.layerRpc),
    Layer.provide(Transport.layerClientProtocol)
  )
  return SocketRunner.layer.pipe(
    Layer.provide([Transport.layerSocketServer, Transport.layerClientProtocol, health]),
    Layer.provideMerge(storage(config, Option.some(runner))),
    Layer.provide(serialization),
    Layer.provideMerge(Security.layer(config.security)),
    Layer.provideMerge(Store.layer(config.store, { applicationName: runnerApplicationName(runner, options.applicationName) }))
  )
}

/**
 * The Postgres application name of a runner's connections: `<name> <host>:<port>`. The address
 * at the end is how `RunnerList` tells which runner holds which shard locks.
 *
 * @since 0.4.0
 */
export const runnerApplicationName = (runner: RunnerConfig, name = "shardhub-runner") =>
  `${name} ${runner.host}:${runner.port}`

/**
 * A client-only participant on the store from `config`.
 *
 * @since 0.1.0
 */
export const clientLayer = (config: ClusterConfig, options: {
  readonly applicationName?: string | undefined
} = {}) =>
  SocketRunner.layerClientOnly.pipe(
    Layer.provide(Transport.layerClientProtocol),
    Layer.provideMerge(storage(config, Option.none())),
    Layer.provide(serialization),
    Layer.provideMerge(Security.layer(config.security)),
    Layer.provideMerge(Store.layer(config.store, { applicationName: options.applicationName ?? "shardhub-client" }))
  )

/**
 * {@link clientLayer} with its configuration read from the environment.
 *
 * @since 0.1.0
 */
export const clientLayerFromEnv = (options?: { readonly applicationName?: string | undefined }) =>
  Layer.unwrap(Effect.map(clusterConfig, (config) => clientLayer(config, options)))
