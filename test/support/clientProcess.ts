/**
 * A client-only participant for tests: joins the cluster on DATABASE_URL, prints `ready`, then
 * answers JSON requests read line by line from stdin with JSON lines on stdout:
 *
 *   {"id":1,"op":"whoami","entityId":"p-1","timeoutMs":2000}
 *   → {"id":1,"ok":true,"runner":"127.0.0.1:4000","pid":123,"activation":7}
 *   → {"id":1,"ok":false,"error":"TimeoutError"}
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Stream } from "effect"
import * as Readline from "node:readline"
import * as Cluster from "../../src/node/Cluster.ts"
import * as Probe from "../../src/node/Probe.ts"

interface Request {
  readonly id: number
  readonly op: "whoami"
  readonly entityId: string
  readonly timeoutMs: number
}

const lines = Stream.fromAsyncIterable(Readline.createInterface({ input: process.stdin }), (e) => e)

const program = Effect.gen(function*() {
  const probes = yield* Probe.Probe.client
  yield* Console.log("ready")
  yield* lines.pipe(
    Stream.runForEach((line) => {
      const request = JSON.parse(line) as Request
      return probes(request.entityId).Whoami().pipe(
        Effect.timeout(request.timeoutMs),
        Effect.map((a) => ({ id: request.id, ok: true, runner: a.runner, pid: a.pid, activation: a.activation })),
        Effect.catchCause((cause) => Effect.succeed({ id: request.id, ok: false, error: String(cause) })),
        Effect.flatMap((answer) => Effect.sync(() => process.stdout.write(JSON.stringify(answer) + "\n"))),
        Effect.forkDetach
      )
    })
  )
})

program.pipe(Effect.provide(Cluster.clientLayerFromEnv({ applicationName: "shardhub-test-client" })), NodeRuntime.runMain)
