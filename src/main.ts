/**
 * A runner process (what `shardhub runner` runs): the cluster store (embedded Postgres unless
 * DATABASE_URL is set) and one runner, until Ctrl-C or SIGTERM.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect, Layer } from "effect"
import * as Runner from "./cluster/Runner.ts"

Layer.launch(Runner.layerFromEnv()).pipe(
  // Every failure here has a message written for the user; print it without a stack trace.
  Effect.catch((error) => Console.error(`shardhub: ${error.message}`).pipe(Effect.andThen(Effect.fail(error)))),
  (effect) => NodeRuntime.runMain(effect, { disableErrorReporting: true })
)
