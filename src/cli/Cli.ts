/**
 * `shardhub`: run a local cluster (`up`), a runner or the gateway, and work with instances and
 * sequences from a shell. Any failure exits non-zero with one line saying why. Loaded by
 * `main.ts`.
 *
 * @since 0.4.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Console, Effect } from "effect"
import { Command } from "effect/cli"
import { applyCommands } from "./Apply.ts"
import { clientCommands } from "./Commands.ts"
import { deployCommands } from "./Deploy.ts"
import { version } from "../base/Version.ts"
import { localCommands } from "./Local.ts"
import { serviceCommands } from "./Service.ts"

const shardhub = Command.make("shardhub").pipe(
  Command.withDescription("Run and control programs across a cluster of machines"),
  Command.withSubcommands([...localCommands, ...clientCommands, ...deployCommands, ...applyCommands, ...serviceCommands])
)

Command.run(shardhub, { version }).pipe(
  Effect.catch((error) =>
    Console.error(`shardhub: ${(error as { message?: string }).message ?? String(error)}`).pipe(
      Effect.andThen(Effect.fail(error))
    )
  ),
  Effect.provide(NodeServices.layer),
  (effect) => NodeRuntime.runMain(effect, { disableErrorReporting: true })
)
