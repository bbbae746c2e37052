/**
 * A client-only service: starts `cat` on whichever runner owns it, talks to it, stops it, and
 * calls the `Counter` entity of `runner-with-entity.ts`. Same environment as the runners.
 * Run: node examples/client.ts
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Fiber, Stream } from "effect"
import { Client, HostClient, InstanceClient } from "shardhub"
import { Counter } from "./runner-with-entity.ts"

const program = Effect.gen(function*() {
  const host = yield* HostClient.HostClient
  const instances = yield* InstanceClient.InstanceClient

  const info = yield* host.start({ program: { _tag: "Command", command: "cat" } })
  yield* Console.log(`started ${info.id} on ${info.runner} (pid ${info.pid})`)

  const output = yield* instances.output(info.id).pipe(Stream.decodeText, Stream.mkString, Effect.forkChild)
  yield* instances.input(info.id, Stream.make(new TextEncoder().encode("hello through cat\n")))
  yield* Console.log(`output: ${(yield* Fiber.join(output)).trim()}`)

  const ended = yield* instances.stop(info.id, { timeoutMs: 2000 })
  yield* Console.log(`ended: ${ended.status}, exit code ${ended.exitCode}`)

  const counter = (yield* Counter.client)("visits")
  yield* counter.Increment({ by: 1 })
  yield* Console.log(`counter: ${yield* counter.Increment({ by: 41 })}`)
})

program.pipe(Effect.provide(Client.layerFromEnv()), NodeRuntime.runMain)
