import { Effect } from "effect"
import { HostClient } from "../src/client/HostClient.ts"
import { InstanceClient } from "../src/client/InstanceClient.ts"
import * as Client from "../src/node/Client.ts"
import { clientRuntime, percentile, runMain, startRunner, temporaryStore } from "./support.ts"
import * as ChildProcess from "node:child_process"
const cat = { program: { _tag: "Command" as const, command: "cat" } }
const rawSpawn = () => new Promise<number>((resolve) => { const t = performance.now(); const c = ChildProcess.spawn("cat", [], { stdio: "pipe" }); c.once("spawn", () => { const took = performance.now() - t; c.kill("SIGKILL"); c.once("close", () => resolve(took)) }) })
runMain(async () => {
  const store = await temporaryStore()
  const runner = await startRunner("runner-1", store.databaseUrl)
  const runtime = clientRuntime(store.databaseUrl, Client.layerFromEnv({ applicationName: "bench" }))
  const run = <A, E>(e: Effect.Effect<A, E, any>) => runtime.runPromise(e as any) as Promise<A>
  try {
    const host = await run(HostClient)
    const instances = await run(InstanceClient)
    for (let i = 0; i < 20; i++) await run(Effect.flatMap(host.start(cat), (info) => instances.kill(info.id)))
    for (let round = 0; round < 3; round++) {
      const raw: Array<number> = []
      for (let i = 0; i < 100; i++) raw.push(await rawSpawn())
      const times: Array<number> = []
      const ids: Array<string> = []
      for (let i = 0; i < 200; i++) { const t = performance.now(); ids.push((await run(host.start(cat))).id); times.push(performance.now() - t) }
      times.sort((a, b) => a - b); raw.sort((a, b) => a - b)
      console.log("raw p50", percentile(raw, 50).toFixed(2), "start p50", percentile(times, 50).toFixed(2), "p90", percentile(times, 90).toFixed(2))
      await run(Effect.forEach(ids, (id) => instances.kill(id, { removeImmediately: true }), { concurrency: 16 }))
    }
  } finally { await runtime.dispose(); await runner.kill("SIGTERM"); console.log(runner.output().split("\n").filter((l: string) => l.includes("TIMING")).join("\n")); await store.close() }
})
