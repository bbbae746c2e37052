/**
 * A runner process, composed: the ProcessManager (started first, so that whatever a previous
 * incarnation left running is stopped before anything else), the cluster store, the runner's
 * socket server and shard locks, and the entities every runner hosts. `src/main.ts` launches it.
 *
 * @since 0.1.0
 */
import * as Path from "node:path"
import { Console, Effect, Layer, Option, Schema } from "effect"
import * as ProcessManager from "../process/ProcessManager.ts"
import * as Cluster from "./Cluster.ts"
import { clusterConfig, runnerConfig } from "./Config.ts"
import * as Probe from "./Probe.ts"
import * as Store from "./Store.ts"

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
 * The entities a runner hosts.
 *
 * @since 0.1.0
 */
export const entities = Probe.layer

/**
 * Prints what was started and where, then asks a probe to answer through the cluster to prove
 * the runner serves.
 *
 * @since 0.1.0
 */
const announce = (address: string, stateDir: string) =>
  Layer.effectDiscard(Effect.gen(function*() {
    const store = yield* Store.Store
    const processes = yield* ProcessManager.ProcessManager
    yield* Console.log(`shardhub runner  ${address} (pid ${process.pid})`)
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
 * A runner with its configuration read from the environment.
 *
 * @since 0.1.0
 */
export const layerFromEnv = Layer.unwrap(Effect.gen(function*() {
  const [config, runner] = yield* Effect.all([clusterConfig, runnerConfig])
  const cluster = Cluster.runnerLayer(config, runner)
  const address = `${Option.getOrElse(runner.listenHost, () => runner.host)}:${runner.port}`
  const stateDir = Option.getOrElse(
    runner.stateDir,
    () => Path.join(config.store.home, "runners", `${runner.host}-${runner.port}`)
  )
  return announce(`${runner.host}:${runner.port}`, stateDir).pipe(
    Layer.provide(entities),
    Layer.provide(cluster),
    Layer.provide(ProcessManager.layer({ stateDir })),
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
