/**
 * Transport benchmark: an entity round trip and a streamed download through shardhub (a runner
 * process, a client-only participant in this process), against the raw OS baseline measured in
 * the same run (a plain TCP request/response and a plain TCP stream between two processes on
 * loopback, with TCP_NODELAY), and the cost of transport security: the same through a runner
 * in plain mode.
 *
 *   npm run bench:transport [-- --calls 2000 --mb 200]
 */
import { Effect, Stream } from "effect"
import * as Net from "node:net"
import { parseArgs } from "node:util"
import * as Cluster from "../src/node/Cluster.ts"
import * as Probe from "../src/node/Probe.ts"
import { spawnNode } from "../test/support/processes.ts"
import { clientRuntime, percentile, printTable, runMain, startRunner, temporaryStore } from "./support.ts"

const { values } = parseArgs({ options: { calls: { type: "string", default: "2000" }, mb: { type: "string", default: "200" } } })
const calls = Number(values.calls)
const chunkSize = 64 * 1024
const chunks = Math.round((Number(values.mb) * 1024 * 1024) / chunkSize)

const connect = (port: number) =>
  new Promise<Net.Socket>((resolve) => {
    const socket = Net.createConnection({ host: "127.0.0.1", port, noDelay: true }, () => resolve(socket))
  })

const rawRoundTrips = async (port: number) => {
  const socket = await connect(port)
  const times: Array<number> = []
  for (let i = 0; i < calls; i++) {
    const start = performance.now()
    await new Promise<void>((resolve) => {
      socket.once("data", () => resolve())
      socket.write("p")
    })
    times.push(performance.now() - start)
  }
  socket.destroy()
  return times.sort((a, b) => a - b)
}

const rawStream = async (port: number) => {
  const socket = await connect(port)
  const start = performance.now()
  let bytes = 0
  socket.on("data", (data) => (bytes += data.length))
  socket.write("S")
  await new Promise((resolve) => socket.once("end", resolve))
  return bytes / 1024 / 1024 / ((performance.now() - start) / 1000)
}

/** Round trips and a streamed download through a runner in `mode` (its own database, this process as the client). */
const throughShardhub = async (store: Awaited<ReturnType<typeof temporaryStore>>, mode: "auto" | "tls" | "plain") => {
  const databaseUrl = await store.database(`bench_${mode}`)
  const runner = await startRunner(`runner-${mode}`, databaseUrl, { SHARDHUB_TRANSPORT: mode })
  const runtime = clientRuntime(databaseUrl, Cluster.clientLayerFromEnv({ applicationName: "shardhub-bench" }), {
    SHARDHUB_TRANSPORT: mode
  })
  try {
    return await runtime.runPromise(Effect.gen(function*() {
      const probe = (yield* Probe.Probe.client)("bench")
      yield* probe.Whoami() // activate the entity and connect
      const times: Array<number> = []
      for (let i = 0; i < calls; i++) {
        const start = performance.now()
        yield* probe.Whoami()
        times.push(performance.now() - start)
      }
      const start = performance.now()
      const bytes = yield* probe.Bytes({ chunks, chunkSize }).pipe(
        Stream.runFold(() => 0, (total, chunk) => total + chunk.length)
      )
      const mbps = bytes / 1024 / 1024 / ((performance.now() - start) / 1000)
      return { times: times.sort((a, b) => a - b), mbps }
    }))
  } finally {
    await runtime.dispose()
    await runner.kill("SIGTERM")
  }
}

const main = async () => {
  const raw = spawnNode("raw-peer", "scripts/raw-peer.ts", { args: [String(chunks), String(chunkSize)] })
  const rawPort = Number((await raw.waitFor(/port (\d+)/))[1])
  const rawTimes = await rawRoundTrips(rawPort)
  const rawMBps = await rawStream(rawPort)
  await raw.kill()

  const store = await temporaryStore()
  try {
    const plain = await throughShardhub(store, "plain")
    const secured = await throughShardhub(store, "auto")
    const tls = await throughShardhub(store, "tls")
    const title = `${calls} sequential round trips, ${Number(values.mb)} MB streamed in 64 KiB chunks`
    printTable(`transport (the default: the cluster key, proven by the loopback handshake here): ${title}`, [
      ["round trip p50", percentile(rawTimes, 50), percentile(secured.times, 50), "ms"],
      ["round trip p99", percentile(rawTimes, 99), percentile(secured.times, 99), "ms"],
      ["stream throughput", rawMBps, secured.mbps, "MB/s"]
    ])
    printTable("the cost of security: the default (shardhub) vs plain mode (raw), same run", [
      ["round trip p50", percentile(plain.times, 50), percentile(secured.times, 50), "ms"],
      ["round trip p99", percentile(plain.times, 99), percentile(secured.times, 99), "ms"],
      ["stream throughput", plain.mbps, secured.mbps, "MB/s"]
    ])
    printTable("the cost of TLS, as between machines: SHARDHUB_TRANSPORT=tls (shardhub) vs plain mode (raw), same run", [
      ["round trip p50", percentile(plain.times, 50), percentile(tls.times, 50), "ms"],
      ["round trip p99", percentile(plain.times, 99), percentile(tls.times, 99), "ms"],
      ["stream throughput", plain.mbps, tls.mbps, "MB/s"]
    ])
  } finally {
    await store.close()
  }
}

runMain(main)
