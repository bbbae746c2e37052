/**
 * A participant that only opens the cluster store (from the environment: DATABASE_URL or the
 * embedded store in SHARDHUB_HOME), for store tests. Prints one JSON line describing the
 * server, then runs each stdin line as SQL and prints the rows as a JSON line; exits when stdin
 * ends, releasing the store.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Option, Stream } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Readline from "node:readline"
import * as Store from "../../src/store/Store.ts"

const program = Effect.gen(function*() {
  const store = yield* Store.Store
  const sql = yield* SqlClient
  const server = Option.getOrUndefined(store.embedded)
  console.log(JSON.stringify({ ready: true, pid: server?.pid, port: server?.port, displayUrl: store.displayUrl }))
  yield* Stream.fromAsyncIterable(Readline.createInterface({ input: process.stdin }), (e) => e).pipe(
    Stream.runForEach((line) =>
      sql.unsafe(line).pipe(
        Effect.map((rows) => ({ rows })),
        Effect.catch((error) => Effect.succeed({ error: String(error) })),
        Effect.flatMap((answer) => Effect.sync(() => console.log(JSON.stringify(answer))))
      )
    )
  )
})

program.pipe(Effect.provide(Store.layerFromEnv({ applicationName: "shardhub-test-store" })), NodeRuntime.runMain)
