/**
 * `npm run bench:sequence [-- --json]`: sequences on 2 runner processes through a client-only
 * participant (this process), beside raw baselines measured in the same run:
 *
 * - start of a Node pass-through sequence → first output byte at the client (one byte sent as
 *   soon as the start answered), p50 of 30, vs a bare `node` child that pipes stdin to stdout:
 *   spawn → first byte back (`raw_node_start_ms`).
 * - 1 GiB client → pass-through sequence → client on one inout connection, vs the same bytes
 *   through a bare `node` pass-through child's pipes in this process.
 *
 * Each shardhub figure twice: relayed by the runner, and `direct` (the connection handed to the
 * sequence's process itself).
 */
import { Effect, Stream } from "effect"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Client from "../src/node/Client.ts"
import { HostClient } from "../src/client/HostClient.ts"
import { InstanceClient } from "../src/client/InstanceClient.ts"
import { packDirectory } from "../src/sequence/Pack.ts"
import { clientRuntime, nodePassThrough, percentile, pipeThroughput, printTable, rawNodeFirstByte, runMain, startRunner, tearDown, temporaryStore } from "./support.ts"

const json = process.argv.includes("--json")
const log = (line: string) => {
  if (!json) console.error(line)
}
const STARTS = 30
const STREAM_BYTES = 1024 * 1024 * 1024
const CHUNK = 256 * 1024
const chunk = Buffer.alloc(CHUNK, 7)
const passthrough = Path.join(import.meta.dirname, "../test/sequence/fixtures/passthrough")

const sorted = (values: Array<number>) => values.sort((a, b) => a - b)


const rawStream = () => pipeThroughput(nodePassThrough(), STREAM_BYTES, chunk)

const main = async () => {
  const store = await temporaryStore()
  const runners = await Promise.all([1, 2].map((i) => startRunner(`runner-${i}`, store.databaseUrl)))
  const runtime = clientRuntime(store.databaseUrl, Client.layerFromEnv({ applicationName: "shardhub-bench" }))
  const run = <A, E>(effect: Effect.Effect<A, E, HostClient | InstanceClient>) => runtime.runPromise(effect)
  try {
    const host = await run(HostClient)
    const instances = await run(InstanceClient)
    const seq = await run(host.sendSequence(packDirectory(passthrough)))
    const firstByte = (direct: boolean) =>
      run(Effect.gen(function*() {
        const started = performance.now()
        const info = yield* host.startSequence(seq.id)
        yield* instances.inout(info.id, Stream.make(new Uint8Array([120])), { end: false, direct }).pipe(Stream.take(1), Stream.runDrain)
        const took = performance.now() - started
        yield* instances.kill(info.id, { removeImmediately: true })
        return took
      }))
    // Warm up: every runner unpacks the package, connections open.
    for (let i = 0; i < 10; i++) await firstByte(i % 2 === 0)
    for (let i = 0; i < 5; i++) await rawNodeFirstByte()

    log("start → first output byte")
    const raw: Array<number> = []
    const seqs: Array<number> = []
    const directs: Array<number> = []
    for (let i = 0; i < STARTS; i++) {
      raw.push(await rawNodeFirstByte())
      seqs.push(await firstByte(false))
      directs.push(await firstByte(true))
    }
    sorted(raw)
    sorted(seqs)
    sorted(directs)

    const stream = (direct: boolean) =>
      run(Effect.gen(function*() {
        const info = yield* host.startSequence(seq.id)
        const begun = performance.now()
        const bytes = Stream.fromIterable(Array.from({ length: STREAM_BYTES / CHUNK }, () => chunk as Uint8Array))
        const received = yield* instances.inout(info.id, bytes, { direct }).pipe(
          Stream.runFold(() => 0, (n, bytes: Uint8Array) => n + bytes.length)
        )
        const seconds = (performance.now() - begun) / 1000
        if (received !== STREAM_BYTES) return yield* Effect.die(`received ${received} of ${STREAM_BYTES} bytes`)
        return STREAM_BYTES / 1024 / 1024 / seconds
      }))
    log(`${STREAM_BYTES / 1024 / 1024} MiB through a pass-through sequence`)
    const rawMiBs = await rawStream()
    const streamed = await stream(false)
    const streamedDirect = await stream(true)

    const result = {
      seq_start_first_byte_ms: percentile(seqs, 50),
      seq_direct_start_first_byte_ms: percentile(directs, 50),
      raw_node_start_ms: percentile(raw, 50),
      seq_stream_mib_s: streamed,
      seq_direct_stream_mib_s: streamedDirect,
      raw_node_pipe_mib_s: rawMiBs
    }
    if (json) {
      console.log(JSON.stringify(result))
      return
    }
    printTable(`sequences: 2 runners, client-only participant (${Os.cpus().length} cores, node ${process.version})`, [
      ["start → first output byte p50 (raw: bare node)", result.raw_node_start_ms, result.seq_start_first_byte_ms, "ms"],
      ["start → first output byte p99", percentile(raw, 99), percentile(seqs, 99), "ms"],
      ["start → first output byte p50, direct", result.raw_node_start_ms, result.seq_direct_start_first_byte_ms, "ms"],
      ["1 GiB through a pass-through (raw: node child pipes)", result.raw_node_pipe_mib_s, result.seq_stream_mib_s, "MiB/s"],
      ["1 GiB through a pass-through, direct", result.raw_node_pipe_mib_s, result.seq_direct_stream_mib_s, "MiB/s"]
    ])
  } finally {
    await tearDown({ runtime, runners, store })
  }
}

runMain(main)
