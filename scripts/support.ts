/**
 * Shared pieces of the benchmark scripts: a throwaway embedded store, runner processes, an
 * in-process client-only participant, and the result table.
 */
import { ConfigProvider, Effect, Layer, ManagedRuntime, Redacted } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Cluster from "../src/node/Cluster.ts"
import * as EmbeddedPostgres from "../src/store/EmbeddedPostgres.ts"
import * as Store from "../src/store/Store.ts"
import { type Spawned, startRunnerProcess } from "../test/support/processes.ts"
import { accountExternalMemoryInGlobalLimit } from "../src/base/heap.js"

// A benchmark's own process is a client that streams bulk bytes, like the gateway and the CLI:
// it runs with the V8 setting those set for themselves (README, "Streaming bulk bytes").
accountExternalMemoryInGlobalLimit()

/** A durable embedded store in a temporary home, with one database; `close` removes it all. */
export const temporaryStore = async () => {
  const home = await Fs.mkdtemp(Path.join(Os.tmpdir(), "shardhub-bench-"))
  const server = await Effect.runPromise(EmbeddedPostgres.ensureRunning({ home }))
  await Effect.runPromise(Store.ensureDatabase(EmbeddedPostgres.url(server, "postgres"), "bench"))
  const databaseUrl = Redacted.value(EmbeddedPostgres.url(server, "bench"))
  return {
    databaseUrl,
    /** Another database on the same server (for a second cluster). */
    database: async (name: string) => {
      await Effect.runPromise(Store.ensureDatabase(EmbeddedPostgres.url(server, "postgres"), name))
      return Redacted.value(EmbeddedPostgres.url(server, name))
    },
    close: async () => {
      await Effect.runPromise(EmbeddedPostgres.stop(server))
      await Fs.rm(home, { recursive: true, force: true })
    }
  }
}

/** A runner process with the default timings (or `env` overrides); resolves once it serves. */
export const startRunner = (name: string, databaseUrl: string, env: Record<string, string> = {}) =>
  startRunnerProcess(name, { DATABASE_URL: databaseUrl, ...env })

/**
 * A client-only participant in this process, on `databaseUrl` with the default timings (and
 * `env` on top of this process's environment): the bare cluster client, or `layer`. The
 * environment is read here, explicitly: Effect's default config provider keeps the first one it
 * saw, so a second runtime in the same process would otherwise join the first one's cluster.
 */
export function clientRuntime(databaseUrl: string): ManagedRuntime.ManagedRuntime<Layer.Success<ReturnType<typeof Cluster.clientLayerFromEnv>>, unknown>
export function clientRuntime<A, E>(databaseUrl: string, layer: Layer.Layer<A, E>, env?: Record<string, string>): ManagedRuntime.ManagedRuntime<A, E>
export function clientRuntime(databaseUrl: string, layer?: Layer.Layer<any, any>, env: Record<string, string> = {}) {
  const provider = ConfigProvider.fromEnv({
    env: { ...process.env as Record<string, string>, DATABASE_URL: databaseUrl, ...env }
  })
  return ManagedRuntime.make(
    (layer ?? Cluster.clientLayerFromEnv({ applicationName: "shardhub-bench" })).pipe(
      Layer.provide(ConfigProvider.layer(provider))
    )
  )
}

/** Ends a benchmark: the client runtime, then the runners, then the store. */
export const tearDown = async (parts: {
  readonly runtime: { readonly dispose: () => Promise<void> }
  readonly runners: ReadonlyArray<Spawned>
  readonly store: { readonly close: () => Promise<void> }
}) => {
  await parts.runtime.dispose()
  await Promise.all(parts.runners.map((r) => r.kill("SIGTERM")))
  await parts.store.close()
}

/** Runs a benchmark's `main` and exits with its outcome (runner processes may keep handles open). */
export const runMain = (main: () => Promise<void>) =>
  main().then(() => process.exit(0), (error) => {
    console.error(error)
    process.exit(1)
  })

/** Percentile of sorted numbers. */
export const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN

/**
 * The run with the median `score` of 3 runs of `f`: one stream run alone can differ from the
 * next by up to 2× on a 2-core machine (which process shares a core with which, what the last
 * run left in a heap).
 */
export const medianOf3 = async <A>(f: () => Promise<A>, score: (a: A) => number): Promise<A> => {
  const runs: Array<A> = []
  for (let i = 0; i < 3; i++) runs.push(await f())
  return runs.sort((a, b) => score(a) - score(b))[1]!
}

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

/**
 * Writes `total` bytes in `chunk`s into a child's stdin and counts its stdout until it ends:
 * MiB/s through the child's pipes (the raw baseline of stream benchmarks).
 */
export const pipeThroughput = (child: import("node:child_process").ChildProcessWithoutNullStreams, total: number, chunk: Buffer) =>
  new Promise<number>((resolve) => {
    let received = 0
    const started = performance.now()
    child.stdout.on("data", (data: Buffer) => (received += data.length))
    child.stdout.on("end", () => resolve(received / 1024 / 1024 / ((performance.now() - started) / 1000)))
    let sent = 0
    const write = () => {
      while (sent < total) {
        sent += chunk.length
        if (!child.stdin.write(chunk)) return child.stdin.once("drain", write)
      }
      child.stdin.end()
    }
    write()
  })

/** A bare node child piping stdin to stdout (the raw baseline of sequence benchmarks). */
export const nodePassThrough = () =>
  ChildProcess.spawn(process.execPath, ["-e", "process.stdin.pipe(process.stdout)"], { stdio: "pipe" })

/** Spawn of a bare node pass-through child → its first byte back, in ms. */
export const rawNodeFirstByte = () =>
  new Promise<number>((resolve) => {
    const started = performance.now()
    const child = nodePassThrough()
    child.stdout.once("data", () => {
      const took = performance.now() - started
      child.kill("SIGKILL")
      child.once("close", () => resolve(took))
    })
    child.stdin.write("x")
  })

/**
 * Forwards TCP `listen` to the unix socket `target` (the embedded store's, to a bridge of network
 * namespaces), in a process of its own: a script's checks may keep its own event loop busy, and
 * the runners' store traffic must not wait for them. The caller kills the child when done.
 */
const forwarder = "const n = require('net'); const [lh, lp, path] = process.argv.slice(1); " +
  "n.createServer((s) => { const u = n.connect({ path }); s.pipe(u).pipe(s); " +
  "for (const [a, b] of [[s, u], [u, s]]) { a.on('error', () => b.destroy()); a.on('close', () => b.destroy()) } })" +
  ".listen(Number(lp), lh, () => console.log('forwarding'))"
export const forward = async (listen: { host: string; port: number }, socket: string) => {
  const child = ChildProcess.spawn(process.execPath, ["-e", forwarder, listen.host, String(listen.port), socket], {
    stdio: ["ignore", "pipe", "inherit"]
  })
  await new Promise<void>((resolve, reject) => {
    child.stdout.once("data", () => resolve())
    child.once("exit", (code) => reject(new Error(`the store forwarder exited (${code})`)))
  })
  return child
}
