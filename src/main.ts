/**
 * `npm start`: a local shardhub cluster — the cluster store (embedded Postgres unless
 * DATABASE_URL is set) and one runner — until Ctrl-C or SIGTERM.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import * as Runner from "./cluster/Runner.ts"

Layer.launch(Runner.layerFromEnv).pipe(NodeRuntime.runMain)
