/**
 * Transport benchmark: an entity round trip and a streamed download through shardhub (a runner
 * process, a client-only participant in this process), against the raw OS baseline measured in
 * the same run (a plain TCP request/response and a plain TCP stream between two processes on
 * loopback, with TCP_NODELAY).
 *
 *   npm run bench:transport [-- --calls 2000 --mb 200]
 */
import { Effect, Stream } from "effect"
import * as Net from "node:net"
import { parseArgs } from "node:util"
import * as Probe from "../src/cluster/Probe.ts"
import { spawnNode } from "../test/support/processes.ts"
import { clientRuntime, percentile, printTable, runMain, startRunner, tearDown, temporaryStore } from "./support.ts"

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

const main = async () => {
  const raw = spawnNode("raw-peer", "scripts/raw-peer.ts", { args: [String(chunks), String(chunkSize)] })
  const rawPort = Number((await raw.waitFor(/port (\d+)/))[1])
  const rawTimes = await rawRoundTrips(rawPort)
  const rawMBps = await rawStream(rawPort)
  await raw.kill()

  const store = await temporaryStore()
  const runner = await startRunner("runner", store.databaseUrl)
  const runtime = clientRuntime(store.databaseUrl)
  try {
    const result = await runtime.runPromise(Effect.gen(function*() {
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
    printTable(`transport: ${calls} sequential round trips, ${Number(values.mb)} MB streamed in 64 KiB chunks`, [
      ["round trip p50", percentile(rawTimes, 50), percentile(result.times, 50), "ms"],
      ["round trip p99", percentile(rawTimes, 99), percentile(result.times, 99), "ms"],
      ["stream throughput", rawMBps, result.mbps, "MB/s"]
    ])
  } finally {
    await tearDown({ runtime, runners: [runner], store })
  }
}

runMain(main)
