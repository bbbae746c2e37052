/**
 * A runner process (what `shardhub runner` runs): the cluster store (embedded Postgres unless
 * DATABASE_URL is set) and one runner, until Ctrl-C or SIGTERM. Node's compile cache is turned on
 * before the rest loads (a third of a runner's start-up is compiling its modules), and V8 told
 * to count the buffers of streams against its global limit (see heap.js).
 */
import { enable, flush } from "./cli/compileCache.js"
import { accountExternalMemoryInGlobalLimit } from "./base/heap.js"

accountExternalMemoryInGlobalLimit()
enable()
const [NodeRuntime, { Console, Effect, Layer }, Runner] = await Promise.all([
  import("@effect/platform-node/NodeRuntime"),
  import("effect"),
  import("./node/Runner.ts")
])
flush()

Layer.launch(Runner.layerFromEnv()).pipe(
  // Every failure here has a message written for the user; print it without a stack trace.
  Effect.catch((error) => Console.error(`shardhub: ${error.message}`).pipe(Effect.andThen(Effect.fail(error)))),
  (effect) => NodeRuntime.runMain(effect, { disableErrorReporting: true })
)
