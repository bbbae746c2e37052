/**
 * `npm run bench:process [-- --json]`: the ProcessManager beside the raw Node baseline, measured
 * in the same run on the same children.
 *
 * - spawn → exit of `/bin/true` (p50, p99), one at a time; raw = `child_process.spawn` with
 *   piped stdio until `'close'` (the manager's terminal status also waits for output).
 * - spawn rate: 500 `/bin/true`, 4 in flight.
 * - 200 MiB through `cat` in 64 KiB chunks (stdout not line-logged: it is binary).
 * - message round trip: ping-pong of a 98-byte JSON message with an echo child over the fd-3
 *   channel (NDJSON), 10,000 round trips after 1,000 warm-up.
 * - log lines ingested per second: a child printing 500,000 lines; raw = counting newlines.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import type * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect, Stream } from "effect"
import * as ProcessManager from "../src/process/ProcessManager.ts"
import { percentile, printTable } from "./support.ts"

const json = process.argv.includes("--json")
const log = (line: string) => {
  if (!json) console.error(line)
}
const childScript = Path.join(import.meta.dirname, "../test/process/fixtures/child.mjs")
const SPAWNS = 300
const RATE_CHILDREN = 500
const PIPE_BYTES = 200 * 1024 * 1024
const CHUNK = 64 * 1024
const ROUND_TRIPS = 10_000
const LOG_LINES = 500_000
const message = { id: 0, op: "echo", body: "x".repeat(64) }

const sorted = (values: Array<number>) => values.sort((a, b) => a - b)
const chunks = (() => {
  const chunk = Buffer.alloc(CHUNK, 7)
  return Array.from({ length: PIPE_BYTES / CHUNK }, () => chunk)
})()

// ---- raw baselines ----------------------------------------------------------------------------

const rawSpawnOnce = () =>
  new Promise<number>((resolve) => {
    const started = performance.now()
    const child = ChildProcess.spawn("/bin/true", [], { stdio: "pipe" })
    child.on("close", () => resolve(performance.now() - started))
  })

const rawRate = async () => {
  const started = performance.now()
  let next = 0
  const worker = async () => {
    while (next++ < RATE_CHILDREN) await rawSpawnOnce()
  }
  await Promise.all([worker(), worker(), worker(), worker()])
  return RATE_CHILDREN / ((performance.now() - started) / 1000)
}

const rawPipe = () =>
  new Promise<number>((resolve) => {
    const child = ChildProcess.spawn("cat", [], { stdio: "pipe" })
    const started = performance.now()
    let received = 0
    child.stdout.on("data", (chunk: Buffer) => {
      received += chunk.length
    })
    child.on("close", () => resolve(received / 1048576 / ((performance.now() - started) / 1000)))
    let i = 0
    const write = () => {
      while (i < chunks.length) {
        if (!child.stdin.write(chunks[i++])) return child.stdin.once("drain", write)
      }
      child.stdin.end()
    }
    write()
  })

const rawMessages = () =>
  new Promise<{ p50: number; rate: number }>((resolve) => {
    const child = ChildProcess.spawn(process.execPath, [childScript, "echo"], {
      stdio: ["ignore", "ignore", "inherit", "pipe"],
      env: { ...process.env, SHARDHUB_MESSAGE_FD: "3", SHARDHUB_MESSAGE_CODEC: "ndjson" }
    })
    const channel = child.stdio[3] as Net.Socket
    const times: Array<number> = []
    let carry = ""
    let sentAt = 0
    let count = 0
    let started = 0
    const send = () => {
      sentAt = performance.now()
      channel.write(JSON.stringify({ ...message, id: count }) + "\n")
    }
    channel.on("data", (chunk: Buffer) => {
      const lines = (carry + chunk.toString()).split("\n")
      carry = lines.pop()!
      for (const line of lines) {
        JSON.parse(line)
        count++
        if (count > 1000) times.push((performance.now() - sentAt) * 1000)
        if (count === 1000) started = performance.now()
        if (count === 1000 + ROUND_TRIPS) {
          const rate = ROUND_TRIPS / ((performance.now() - started) / 1000)
          child.kill("SIGKILL")
          return resolve({ p50: percentile(sorted(times), 0.5), rate })
        }
        send()
      }
    })
    send()
  })

const rawLogLines = () =>
  new Promise<number>((resolve) => {
    const started = performance.now()
    const child = ChildProcess.spawn(process.execPath, [childScript, "burst", String(LOG_LINES)], { stdio: "pipe" })
    let lines = 0
    child.stdout.on("data", (chunk: Buffer) => {
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++
    })
    child.on("close", () => resolve(lines / ((performance.now() - started) / 1000)))
  })

// ---- shardhub -------------------------------------------------------------------------------

const measure = Effect.gen(function*() {
  const stateDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-bench-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(stateDir, { recursive: true, force: true })))
  const pm = yield* ProcessManager.make({ stateDir })
  const spawnOnce = Effect.gen(function*() {
    const started = performance.now()
    const handle = yield* pm.spawn({ command: "/bin/true" })
    yield* handle.wait
    const elapsed = performance.now() - started
    yield* pm.remove(handle.id)
    return elapsed
  })

  log("spawn latency…")
  for (let i = 0; i < 20; i++) {
    yield* Effect.promise(rawSpawnOnce)
    yield* spawnOnce
  }
  const raw: Array<number> = []
  const ours: Array<number> = []
  for (let i = 0; i < SPAWNS; i++) {
    raw.push(yield* Effect.promise(rawSpawnOnce))
    ours.push(yield* spawnOnce)
  }
  sorted(raw)
  sorted(ours)

  log("spawn rate…")
  const rawRatePerS = yield* Effect.promise(rawRate)
  const rateStarted = performance.now()
  yield* Effect.forEach(Array.from({ length: RATE_CHILDREN }), () => spawnOnce, { concurrency: 4, discard: true })
  const ratePerS = RATE_CHILDREN / ((performance.now() - rateStarted) / 1000)

  log("pipe through cat…")
  const rawPipeMiBs = yield* Effect.promise(rawPipe)
  const pipeStarted = performance.now()
  const cat = yield* pm.spawn({ command: "cat", log: ["stderr"] })
  const [received] = yield* Effect.all([
    cat.stdout().pipe(Stream.runFold(() => 0, (total, chunk) => total + chunk.length)),
    Stream.run(Stream.fromIterable(chunks), cat.stdin())
  ], { concurrency: 2 })
  const pipeMiBs = received / 1048576 / ((performance.now() - pipeStarted) / 1000)
  if (received !== PIPE_BYTES) throw new Error(`cat returned ${received} of ${PIPE_BYTES} bytes`)

  log("message round trips…")
  const rawMsg = yield* Effect.promise(rawMessages)
  const echo = yield* pm.spawn({
    command: process.execPath,
    args: [childScript, "echo", "--ready"],
    messages: "ndjson",
    readiness: { _tag: "Message", timeoutMs: 10_000 }
  })
  yield* echo.ready
  const pull = yield* Stream.toPull(Stream.flattenIterable(Stream.chunks(yield* echo.messages)))
  const rtts: Array<number> = []
  let msgStarted = 0
  for (let i = 0; i < 1000 + ROUND_TRIPS; i++) {
    if (i === 1000) msgStarted = performance.now()
    const sentAt = performance.now()
    yield* echo.send({ ...message, id: i })
    yield* pull
    if (i >= 1000) rtts.push((performance.now() - sentAt) * 1000)
  }
  const msgRate = ROUND_TRIPS / ((performance.now() - msgStarted) / 1000)
  yield* echo.kill
  sorted(rtts)

  log("log lines…")
  const rawLines = yield* Effect.promise(rawLogLines)
  const logStarted = performance.now()
  const burst = yield* pm.spawn({ command: process.execPath, args: [childScript, "burst", String(LOG_LINES)] })
  yield* burst.wait
  const logLines = LOG_LINES / ((performance.now() - logStarted) / 1000)

  return {
    spawn_p50_ms: percentile(ours, 0.5),
    raw_spawn_p50_ms: percentile(raw, 0.5),
    spawn_p99_ms: percentile(ours, 0.99),
    raw_spawn_p99_ms: percentile(raw, 0.99),
    spawn_rate_s: ratePerS,
    raw_spawn_rate_s: rawRatePerS,
    pipe_mib_s: pipeMiBs,
    raw_pipe_mib_s: rawPipeMiBs,
    msg_rtt_p50_us: percentile(rtts, 0.5),
    raw_msg_rtt_p50_us: rawMsg.p50,
    msg_s: msgRate,
    raw_msg_s: rawMsg.rate,
    log_lines_s: logLines,
    raw_log_lines_s: rawLines
  }
})

const result = await Effect.runPromise(Effect.scoped(measure))
if (json) {
  console.log(JSON.stringify(result))
} else {
  printTable(`ProcessManager vs raw Node (${Os.cpus().length} cores, node ${process.version})`, [
    ["spawn → exit p50 (/bin/true)", result.raw_spawn_p50_ms, result.spawn_p50_ms, "ms"],
    ["spawn → exit p99 (/bin/true)", result.raw_spawn_p99_ms, result.spawn_p99_ms, "ms"],
    ["spawn rate (4 in flight)", result.raw_spawn_rate_s, result.spawn_rate_s, "/s"],
    ["pipe through cat (64 KiB chunks)", result.raw_pipe_mib_s, result.pipe_mib_s, "MiB/s"],
    ["message round trip p50 (NDJSON, fd 3)", result.raw_msg_rtt_p50_us, result.msg_rtt_p50_us, "µs"],
    ["message ping-pong rate", result.raw_msg_s, result.msg_s, "msg/s"],
    ["log lines ingested (500k-line burst)", result.raw_log_lines_s, result.log_lines_s, "lines/s"]
  ])
}
