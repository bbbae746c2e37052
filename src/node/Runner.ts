/**
 * A runner process, composed: the ProcessManager (started first, so that whatever a previous
 * incarnation left running is stopped before anything else), the cluster store, the runner's
 * socket server and shard locks, and the entities every runner hosts. `src/main.ts` launches it.
 *
 * @since 0.1.0
 */
import * as Path from "node:path"
import type { Sharding } from "effect/cluster/Sharding"
import * as Singleton from "effect/cluster/Singleton"
import { Console, Duration, Effect, Layer, Option, Schema } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import * as DataPort from "../instance/DataPort.ts"
import * as InstanceEntity from "../instance/InstanceEntity.ts"
import * as Registry from "../instance/Registry.ts"
import * as PlacementGroups from "../instance/PlacementGroups.ts"
import * as Activator from "../instance/Activator.ts"
import * as SequenceStore from "../sequence/SequenceStore.ts"
import * as Topic from "../topic/Topic.ts"
import * as Durable from "../topic/Durable.ts"
import * as TopicRegistry from "../topic/TopicRegistry.ts"
import * as RunnerMetrics from "../metrics/RunnerMetrics.ts"
import * as ProcessManager from "../process/ProcessManager.ts"
import * as Cluster from "./Cluster.ts"
import * as HeapSettler from "./HeapSettler.ts"
import { type ClusterConfig, clusterConfig, type RunnerConfig, runnerConfig } from "../base/Config.ts"
import { parseLabels, requirementKey } from "../base/Labels.ts"
import * as Fence from "../liveness/Fence.ts"
import * as Handover from "../liveness/Handover.ts"
import * as Home from "../base/Home.ts"
import * as Probe from "./Probe.ts"
import * as Pruning from "../store/Pruning.ts"
import { isLoopback } from "../transport/Security.ts"
import { plainOffLoopback } from "../transport/Transport.ts"
import * as Store from "../store/Store.ts"
import * as Tracing from "../metrics/Tracing.ts"

/**
 * The runner could not listen on its address.
 *
 * @since 0.1.0
 */
export class RunnerListenError extends Schema.TaggedError<RunnerListenError>()("RunnerListenError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * The entities every runner hosts: `Probe`, `Instance` (unpacking sequences into the runner's
 * state directory), and the singletons that forget ended instances and prune the store's
 * bookkeeping after the retention time.
 *
 * @since 0.1.0
 */
export const entities = (config: ClusterConfig, runner: RunnerConfig) =>
  Layer.mergeAll(
    Probe.layer,
    Topic.layer(),
    InstanceEntity.layer({ sequenceCacheDir: Path.join(stateDirOf(config, runner), "sequences") }),
    Singleton.make("shardhub/InstanceRetention", Registry.purgeEvery(config.instanceRetention)),
    Singleton.make("shardhub/StorePruning", Pruning.pruneEvery(config.instanceRetention))
  )

/**
 * Options of a runner.
 *
 * @since 0.3.0
 */
export interface Options {
  /**
   * More entities to host beside shardhub's own: a user's actors. They are given the runner's
   * `Sharding` (and the store's `SqlClient`); provide anything else they need beforehand.
   */
  readonly entities?: Layer.Layer<never, never, Sharding | SqlClient> | undefined
  readonly applicationName?: string | undefined
}

/**
 * The directory a runner keeps its processes' state in.
 *
 * @since 0.3.0
 */
export const stateDirOf = (config: ClusterConfig, runner: RunnerConfig) =>
  Option.getOrElse(runner.stateDir, () => Path.join(config.store.home, "runners", `${runner.host}-${runner.port}`))

/**
 * A runner: the ProcessManager (built first, so that whatever a previous incarnation left
 * running is stopped before anything else), its fence (renewed by each lock refresh), the
 * cluster store and runner layer, the data port, and the entities.
 *
 * @since 0.3.0
 */
export const layer = (config: ClusterConfig, runner: RunnerConfig, options: Options = {}) =>
  Layer.mergeAll(
    entities(config, runner),
    options.entities ?? Layer.empty,
    RunnerMetrics.layer(runner.metrics),
    // Ended instances' entities leave memory after the entity idle time: collect after that.
    HeapSettler.layer({ minDrop: 100, quietMs: Duration.toMillis(config.timings.entityMaxIdleTime) + 5_000 })
  ).pipe(
    Layer.provide(Activator.layer()),
    Layer.provide(Layer.mergeAll(Registry.layer, SequenceStore.layer(), PlacementGroups.layer, Durable.layer, TopicRegistry.layer)),
    Layer.provide(DataPort.layer({
      host: runner.host,
      listenHost: Option.getOrUndefined(runner.listenHost),
      port: runner.dataPort,
      direct: config.security.mode !== "tls" && isLoopback(runner.host)
    })),
    Layer.provideMerge(Cluster.runnerLayer(config, runner, options)),
    Layer.provideMerge(Fence.layer(config.timings.shardLockExpiration)),
    Layer.provideMerge(Handover.layer),
    Layer.provideMerge(ProcessManager.layer({
      stateDir: stateDirOf(config, runner),
      maxProcesses: runner.maxInstances,
      logFileBytes: runner.logFileBytes,
      logKeepFiles: runner.logKeepFiles,
      logRetentionMs: Duration.toMillis(config.instanceRetention)
    }))
  )

/**
 * Prints what was started and where, then asks a probe to answer through the cluster to prove
 * the runner serves.
 *
 * @since 0.1.0
 */
const announce = (address: string, stateDir: string, labels: string) =>
  Layer.effectDiscard(Effect.gen(function*() {
    const store = yield* Store.Store
    const processes = yield* ProcessManager.ProcessManager
    yield* Console.log(`shardhub runner  ${address} (pid ${process.pid})${labels === "" ? "" : `, labels ${labels}`}`)
    yield* Console.log(
      `processes        state in ${stateDir}${
        processes.swept > 0 ? `; stopped ${processes.swept} left running by a previous run` : ""
      }`
    )
    yield* Console.log(
      `cluster store    ${store.displayUrl}${
        Option.match(store.embedded, {
          onNone: () => "",
          onSome: (server) => ` (embedded, data in ${server.dataDirectory})`
        })
      }`
    )
    const started = Date.now()
    const probe = (yield* Probe.Probe.client)(`probe-${process.pid}`)
    const answer = yield* probe.Whoami().pipe(Effect.timeout("30 seconds"))
    yield* Console.log(`probe            answered from ${answer.runner} in ${Date.now() - started} ms`)
    yield* Console.log("ready            (Ctrl-C or SIGTERM stops it)")
  }))

/**
 * A runner with its configuration read from the environment, announcing itself on stdout.
 *
 * @since 0.1.0
 */
export const layerFromEnv = (options: Options & {
  /** Overrides `SHARDHUB_RUNNER_PORT`. */
  readonly port?: number | undefined
  /** Labels beside `SHARDHUB_RUNNER_LABELS` (`key=value`). */
  readonly labels?: ReadonlyArray<string> | undefined
} = {}) =>
  Layer.unwrap(Effect.gen(function*() {
    const [config, fromEnv] = yield* Effect.all([clusterConfig, runnerConfig])
    const exposed = Home.prepare(config.store.home)
    if (exposed !== undefined) yield* Console.error(`warning          ${exposed}`)
    const labels = parseLabels([fromEnv.labels, ...(options.labels ?? [])])
    if (typeof labels === "string") {
      return Layer.effectDiscard(Effect.fail(new RunnerListenError({ message: `SHARDHUB_RUNNER_LABELS / --label: ${labels}` })))
    }
    const runner = {
      ...fromEnv,
      ...(options.port === undefined ? {} : { port: options.port }),
      labels: requirementKey(labels)
    }
    const listenHost = Option.getOrElse(runner.listenHost, () => runner.host)
    const address = `${listenHost}:${runner.port}`
    if (config.security.mode === "plain" && !isLoopback(listenHost)) {
      return Layer.effectDiscard(Effect.fail(new RunnerListenError({ message: plainOffLoopback(listenHost) })))
    }
    return announce(`${runner.host}:${runner.port}`, stateDirOf(config, runner), runner.labels).pipe(
      Layer.provide(layer(config, runner, options)),
      Layer.provide(Tracing.layer(options.applicationName ?? "shardhub-runner")),
      Layer.catchTag("SocketServerError", (error) =>
        Layer.effectDiscard(Effect.fail(
          new RunnerListenError({
            message: `could not listen on ${address}: ${String(error.reason.cause ?? error.message)}` +
              " (is another runner using it? set SHARDHUB_RUNNER_PORT to another port)",
            cause: error
          })
        )))
    )
  }))
