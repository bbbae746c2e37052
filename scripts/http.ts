/**
 * `npm run bench:http [-- --json]`: the HTTP gateway driven by the published
 * `@scramjet/api-client` 0.26.1 — the two figures STH scores 45–60 ms and 350–420 MiB/s on —
 * on 2 runner processes and a gateway process, beside raw baselines measured in the same run:
 *
 * - `http_start_ms`: `SequenceClient.start` → instance id (answered once it can take input), p50
 *   of 30, vs a bare `node` child that pipes stdin to stdout: spawn → first byte back.
 * - `http_first_byte_ms`: `SequenceClient.start` → the first output byte for one byte of input.
 * - `http_stream_mib_s` (octet-stream), `http_stream_text_mib_s` (text/plain): 50 MiB through
 *   `(input) => input.pipe(new PassThrough())` (`sendInput` and the `output` stream), vs the same
 *   bytes through a bare `node` pass-through child's pipes; each the median of 3 runs.
 * - `http_owner_request_ms` vs `http_token_request_ms`: `GET /api/v1/version` on a new connection
 *   (p50 of 300 each, interleaved), let in as the owner (the peer's uid looked up in the kernel's
 *   socket table, once per connection) vs by the bearer token (no lookup): the peer check's cost.
 * - `sth_start_ms`, `sth_first_byte_ms`, `sth_stream_mib_s`: the same client code against STH
 *   0.18.7's host with its process adapter (installed from npm on first use, see `sth.ts`;
 *   `--no-sth` leaves it out).
 */
import { HostClient } from "@scramjet/api-client"
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import { Readable } from "node:stream"
import { packDirectory } from "../src/sequence/Pack.ts"
import { spawnNode } from "../test/support/processes.ts"
import { startSth } from "./sth.ts"
import { medianOf3, nodePassThrough, percentile, pipeThroughput, printTable, rawNodeFirstByte, runMain, startRunner, temporaryStore } from "./support.ts"

const json = process.argv.includes("--json")
const sthBaseline = !process.argv.includes("--no-sth")
const log = (line: string) => {
  if (!json) console.error(line)
}
const STARTS = 30
const STREAM_BYTES = 50 * 1024 * 1024
const CHUNK = 256 * 1024
const chunk = Buffer.alloc(CHUNK, 7)
/** `(input) => input.pipe(new PassThrough())`: what a user writes; see its comment for STH. */
const passthrough = Path.join(import.meta.dirname, "sth/passthrough")
const CONTENT_TYPES = ["application/octet-stream", "text/plain"] as const


/** What one host scores, driven by the published api-client: starts, first bytes, a stream. */
const drive = async (apiBase: string, exact: boolean) => {
  const host = new HostClient(apiBase)
  const sequence = await host.sendSequence(Readable.from([packDirectory(passthrough)]))
  const start = async () => {
    const started = performance.now()
    const instance = await sequence.start({})
    const took = performance.now() - started
    await instance.kill({ removeImmediately: true })
    return took
  }
  /** Start → the first byte of output, for one byte of input sent as soon as the start answered. */
  const firstByte = async () => {
    const started = performance.now()
    const instance = await sequence.start({})
    const output = await instance.getStream("output")
    // Listened for from the start: the output may end (the input's end ends the pass-through)
    // right after its first byte, before a listener added later would hear it.
    const ended = new Promise((resolve) => output.once("close", resolve).once("end", resolve).once("error", resolve))
    const first = new Promise<number>((resolve, reject) => {
      output.once("data", () => resolve(performance.now() - started))
      output.once("error", reject)
    })
    await instance.sendInput(Readable.from([Buffer.from("x")]), {}, { type: "application/octet-stream" })
    const took = await first
    output.resume()
    // The output ends with the instance (cutting it off would reset the client's pooled socket).
    await instance.kill({ removeImmediately: true })
    await ended
    return took
  }
  // Warm up: every runner unpacks the package, connections open.
  for (let i = 0; i < 10; i++) await start()
  const starts: Array<number> = []
  const firstBytes: Array<number> = []
  for (let i = 0; i < STARTS; i++) {
    starts.push(await start())
    firstBytes.push(await firstByte())
  }
  /** 50 MiB sent with `sendInput` while `getStream("output")` is read: MiB/s and bytes out. */
  const stream = async (type: string) => {
    const instance = await sequence.start({})
    const output = await instance.getStream("output")
    const begun = performance.now()
    const received = new Promise<number>((resolve, reject) => {
      let n = 0
      output.on("data", (data: Buffer) => (n += data.length))
      output.on("end", () => resolve(n))
      output.on("error", reject)
    })
    await instance.sendInput(Readable.from(Array.from({ length: STREAM_BYTES / CHUNK }, () => chunk)), {}, { type })
    const bytes = await received
    const mibS = STREAM_BYTES / 1024 / 1024 / ((performance.now() - begun) / 1000)
    if (exact && bytes !== STREAM_BYTES) throw new Error(`${type}: received ${bytes} of ${STREAM_BYTES} bytes`)
    await instance.kill({ removeImmediately: true }).catch(() => undefined)
    return { mibS, bytes }
  }
  const streams: Record<string, { mibS: number; bytes: number }> = {}
  for (const type of CONTENT_TYPES) streams[type] = await medianOf3(() => stream(type), (run) => run.mibS)
  return { starts: starts.sort((a, b) => a - b), firstBytes: firstBytes.sort((a, b) => a - b), streams }
}

/** One GET on a new connection: milliseconds to the end of its answer. */
const freshGet = (url: string, headers: Record<string, string>) =>
  new Promise<number>((resolve, reject) => {
    const started = performance.now()
    Http.get(url, { agent: false, headers }, (response) => {
      if (response.statusCode !== 200) reject(new Error(`${url}: ${response.statusCode}`))
      response.resume()
      response.once("end", () => resolve(performance.now() - started))
    }).once("error", reject)
  })

/** The peer check's cost: the owner (uid lookup) vs the token (none), interleaved. */
const peerCheck = async (url: string, token: string) => {
  const owner: Array<number> = []
  const byToken: Array<number> = []
  const version = `${url}/api/v1/version`
  for (let i = 0; i < 50; i++) await freshGet(version, {})
  for (let i = 0; i < 300; i++) {
    owner.push(await freshGet(version, {}))
    byToken.push(await freshGet(version, { authorization: `Bearer ${token}` }))
  }
  return { owner: owner.sort((a, b) => a - b), byToken: byToken.sort((a, b) => a - b) }
}

const main = async () => {
  const store = await temporaryStore()
  const runners = await Promise.all([1, 2].map((i) => startRunner(`runner-${i}`, store.databaseUrl)))
  const token = Crypto.randomBytes(24).toString("base64url")
  const gateway = spawnNode("gateway", "src/cli/main.ts", {
    args: ["gateway", "--port", "0"],
    env: { DATABASE_URL: store.databaseUrl, SHARDHUB_TOKEN: token, SHARDHUB_GATEWAY_ACCESS_LOG: "false" }
  })
  const sth = sthBaseline ? await startSth() : { unavailable: "left out (--no-sth)" }
  try {
    const [, url] = await gateway.waitFor(/gateway\s+(http:\/\/[^/\s]+)/, 60_000)
    log("raw: bare node spawn → first byte, and a node child's pipes")
    for (let i = 0; i < 5; i++) await rawNodeFirstByte()
    const raw: Array<number> = []
    for (let i = 0; i < STARTS; i++) raw.push(await rawNodeFirstByte())
    raw.sort((a, b) => a - b)
    const rawMiBs = await medianOf3(() => pipeThroughput(nodePassThrough(), STREAM_BYTES, chunk), (mibS) => mibS)
    log("shardhub: api-client starts, first bytes, and 50 MiB through a pass-through sequence")
    const shardhub = await drive(`${url}/api/v1`, true)
    log("shardhub: the peer check (owner by uid vs bearer token), a new connection per request")
    const check = await peerCheck(url!, token)
    let sthScores: Awaited<ReturnType<typeof drive>> | undefined
    if ("url" in sth) {
      log("STH 0.18.7 (process adapter): the same")
      sthScores = await drive(sth.url, false)
    } else log(`STH: ${sth.unavailable}`)

    const result = {
      http_start_ms: percentile(shardhub.starts, 50),
      http_first_byte_ms: percentile(shardhub.firstBytes, 50),
      raw_node_start_ms: percentile(raw, 50),
      http_stream_mib_s: shardhub.streams["application/octet-stream"]!.mibS,
      http_stream_text_mib_s: shardhub.streams["text/plain"]!.mibS,
      raw_node_pipe_mib_s: rawMiBs,
      http_owner_request_ms: percentile(check.owner, 50),
      http_token_request_ms: percentile(check.byToken, 50),
      ...(sthScores === undefined ? {} : {
        sth_start_ms: percentile(sthScores.starts, 50),
        sth_first_byte_ms: percentile(sthScores.firstBytes, 50),
        sth_stream_mib_s: sthScores.streams["application/octet-stream"]!.mibS,
        sth_stream_text_mib_s: sthScores.streams["text/plain"]!.mibS,
        sth_stream_bytes_out: sthScores.streams["application/octet-stream"]!.bytes
      })
    }
    if (json) {
      console.log(JSON.stringify(result))
      return
    }
    printTable(`HTTP gateway with @scramjet/api-client: 2 runners (${Os.cpus().length} cores, node ${process.version})`, [
      ["api-client start → instance id p50 (raw: bare node spawn → first byte)", result.raw_node_start_ms, result.http_start_ms, "ms"],
      ["api-client start → instance id p99", percentile(raw, 99), percentile(shardhub.starts, 99), "ms"],
      ["api-client start → first output byte p50", result.raw_node_start_ms, result.http_first_byte_ms, "ms"],
      ["50 MiB through a pass-through, octet-stream (raw: node child pipes)", result.raw_node_pipe_mib_s, result.http_stream_mib_s, "MiB/s"],
      ["50 MiB through a pass-through, text/plain (raw: node child pipes)", result.raw_node_pipe_mib_s, result.http_stream_text_mib_s, "MiB/s"],
      ["GET version, new connection, p50: owner by peer uid (raw: by token, no lookup)", result.http_token_request_ms, result.http_owner_request_ms, "ms"]
    ])
    if (sthScores === undefined) return
    console.log(`\nbeside STH ${"0.18.7"} (its process adapter, same client, same run)\n`)
    console.log("| metric | STH | shardhub | shardhub / STH |")
    console.log("| --- | ---: | ---: | ---: |")
    const row = (metric: string, sthValue: number, value: number, unit: string) =>
      console.log(`| ${metric} | ${sthValue.toFixed(1)} ${unit} | ${value.toFixed(1)} ${unit} | ${(value / sthValue).toFixed(2)}× |`)
    row("start → instance id p50", result.sth_start_ms!, result.http_start_ms, "ms")
    row("start → first output byte p50", result.sth_first_byte_ms!, result.http_first_byte_ms, "ms")
    row("50 MiB through a pass-through, octet-stream", result.sth_stream_mib_s!, result.http_stream_mib_s, "MiB/s")
    row("50 MiB through a pass-through, text/plain", result.sth_stream_text_mib_s!, result.http_stream_text_mib_s, "MiB/s")
    for (const [type, { bytes }] of Object.entries(sthScores.streams)) {
      if (bytes !== STREAM_BYTES) console.log(`\nSTH sent ${bytes} bytes out for the ${STREAM_BYTES} it got as ${type} (shardhub: exactly ${STREAM_BYTES})`)
    }
  } finally {
    if ("host" in sth) await sth.host.kill("SIGTERM")
    await gateway.kill("SIGTERM")
    await Promise.all(runners.map((r) => r.kill("SIGTERM")))
    await store.close()
  }
}

runMain(main)
