/**
 * `npm run bench:http [-- --json]`: the HTTP gateway driven by the published
 * `@scramjet/api-client` 0.26.1 — the two figures STH scores 45–60 ms and 350–420 MiB/s on —
 * on 2 runner processes and a gateway process, beside raw baselines measured in the same run:
 *
 * - `http_start_ms`: `SequenceClient.start` → instance id (answered once it can take input), p50
 *   of 30, vs a bare `node` child that pipes stdin to stdout: spawn → first byte back.
 * - `http_stream_mib_s`: 50 MiB through a pass-through sequence (`sendInput` and the `output`
 *   stream), vs the same bytes through a bare `node` pass-through child's pipes.
 */
import { HostClient } from "@scramjet/api-client"
import * as Os from "node:os"
import * as Path from "node:path"
import { Readable } from "node:stream"
import { packDirectory } from "../src/sequence/Pack.ts"
import { spawnNode } from "../test/support/processes.ts"
import { nodePassThrough, percentile, pipeThroughput, printTable, rawNodeFirstByte, runMain, startRunner, temporaryStore } from "./support.ts"

const json = process.argv.includes("--json")
const log = (line: string) => {
  if (!json) console.error(line)
}
const STARTS = 30
const STREAM_BYTES = 50 * 1024 * 1024
const CHUNK = 256 * 1024
const chunk = Buffer.alloc(CHUNK, 7)
const passthrough = Path.join(import.meta.dirname, "../test/sequence/fixtures/passthrough")


const main = async () => {
  const store = await temporaryStore()
  const runners = await Promise.all([1, 2].map((i) => startRunner(`runner-${i}`, store.databaseUrl)))
  const gateway = spawnNode("gateway", "src/cli/main.ts", { args: ["gateway", "--port", "0"], env: { DATABASE_URL: store.databaseUrl } })
  try {
    const [, url] = await gateway.waitFor(/gateway\s+(http:\/\/[^/\s]+)/, 60_000)
    const host = new HostClient(`${url}/api/v1`)
    const sequence = await host.sendSequence(Readable.from([packDirectory(passthrough)]))
    const start = async () => {
      const started = performance.now()
      const instance = await sequence.start({})
      const took = performance.now() - started
      await instance.kill({ removeImmediately: true })
      return took
    }
    // Warm up: every runner unpacks the package, connections open.
    for (let i = 0; i < 10; i++) await start()
    for (let i = 0; i < 5; i++) await rawNodeFirstByte()

    log("api-client start → instance id")
    const raw: Array<number> = []
    const starts: Array<number> = []
    for (let i = 0; i < STARTS; i++) {
      raw.push(await rawNodeFirstByte())
      starts.push(await start())
    }
    raw.sort((a, b) => a - b)
    starts.sort((a, b) => a - b)

    log(`${STREAM_BYTES / 1024 / 1024} MiB through a pass-through sequence with the api-client`)
    const rawMiBs = await pipeThroughput(nodePassThrough(), STREAM_BYTES, chunk)
    const instance = await sequence.start({})
    const output = await instance.getStream("output")
    const begun = performance.now()
    const received = new Promise<number>((resolve, reject) => {
      let n = 0
      output.on("data", (data: Buffer) => (n += data.length))
      output.on("end", () => resolve(n))
      output.on("error", reject)
    })
    await instance.sendInput(Readable.from(Array.from({ length: STREAM_BYTES / CHUNK }, () => chunk)), {}, { type: "application/octet-stream" })
    const bytes = await received
    const streamMiBs = STREAM_BYTES / 1024 / 1024 / ((performance.now() - begun) / 1000)
    if (bytes !== STREAM_BYTES) throw new Error(`received ${bytes} of ${STREAM_BYTES} bytes`)

    const result = {
      http_start_ms: percentile(starts, 50),
      raw_node_start_ms: percentile(raw, 50),
      http_stream_mib_s: streamMiBs,
      raw_node_pipe_mib_s: rawMiBs
    }
    if (json) {
      console.log(JSON.stringify(result))
      return
    }
    printTable(`HTTP gateway with @scramjet/api-client: 2 runners (${Os.cpus().length} cores, node ${process.version})`, [
      ["api-client start → instance id p50 (raw: bare node spawn → first byte)", result.raw_node_start_ms, result.http_start_ms, "ms"],
      ["api-client start → instance id p99", percentile(raw, 99), percentile(starts, 99), "ms"],
      ["50 MiB through a pass-through (raw: node child pipes)", result.raw_node_pipe_mib_s, result.http_stream_mib_s, "MiB/s"]
    ])
  } finally {
    await gateway.kill("SIGTERM")
    await Promise.all(runners.map((r) => r.kill("SIGTERM")))
    await store.close()
  }
}

runMain(main)
