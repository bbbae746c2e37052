/**
 * Shared pieces of the benchmark scripts: a throwaway embedded store, runner processes, an
 * in-process client-only participant, and the result table.
 */
import { Effect, ManagedRuntime, Redacted } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Cluster from "../src/cluster/Cluster.ts"
import * as EmbeddedPostgres from "../src/cluster/EmbeddedPostgres.ts"
import * as Store from "../src/cluster/Store.ts"
import { freePort, type Spawned, spawnNode } from "../test/support/processes.ts"

/** A durable embedded store in a temporary home, with one database; `close` removes it all. */
export const temporaryStore = async () => {
  const home = await Fs.mkdtemp(Path.join(Os.tmpdir(), "shardhub-bench-"))
  const server = await Effect.runPromise(EmbeddedPostgres.ensureRunning({ home }))
  await Effect.runPromise(Store.ensureDatabase(EmbeddedPostgres.url(server, "postgres"), "bench"))
  const databaseUrl = Redacted.value(EmbeddedPostgres.url(server, "bench"))
  return {
    databaseUrl,
    close: async () => {
      await Effect.runPromise(EmbeddedPostgres.stop(server))
      await Fs.rm(home, { recursive: true, force: true })
    }
  }
}

/** A runner process with the default timings (or `env` overrides); resolves once it serves. */
export const startRunner = async (name: string, databaseUrl: string, env: Record<string, string> = {}) => {
  const port = await freePort()
  const runner = spawnNode(name, "src/main.ts", {
    env: { DATABASE_URL: databaseUrl, SHARDHUB_RUNNER_HOST: "127.0.0.1", SHARDHUB_RUNNER_PORT: String(port), ...env }
  })
  await runner.waitFor(/^ready/m, 60_000)
  return Object.assign(runner, { address: `127.0.0.1:${port}` }) as Spawned & { readonly address: string }
}

/** A client-only participant in this process, on `databaseUrl` with the default timings. */
export const clientRuntime = (databaseUrl: string) => {
  process.env.DATABASE_URL = databaseUrl
  return ManagedRuntime.make(Cluster.clientLayerFromEnv({ applicationName: "shardhub-bench" }))
}

/** Percentile of sorted numbers. */
export const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN

/** Prints rows of `metric | raw OS | shardhub | ratio` (ratio = shardhub / raw). */
export const printTable = (title: string, rows: ReadonlyArray<readonly [string, number, number, string]>) => {
  console.log(`\n${title}\n`)
  console.log("| metric | raw OS baseline | shardhub | shardhub / raw |")
  console.log("| --- | ---: | ---: | ---: |")
  for (const [metric, raw, shardhub, unit] of rows) {
    console.log(`| ${metric} | ${format(raw)} ${unit} | ${format(shardhub)} ${unit} | ${format(shardhub / raw)}× |`)
  }
}

const format = (n: number) => n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)
