/**
 * `npm run bench:cluster [-- --json]`: instances through a client-only participant (this
 * process) on 3 runner processes and a durable embedded store, beside raw baselines measured in
 * the same run:
 *
 * - start of `cat` → running (p50), one at a time, vs `child_process.spawn("cat")` → 'spawn'.
 * - instance info round trip (p50), vs a trivial Effect cluster entity RPC (`Probe.Whoami`).
 * - info requests per second at concurrency 64 over 16 instances.
 * - bytes client → cat → client on one inout connection (`cat` with `log: []`: bulk binary is
 *   not line-logged; and with the default log), vs the same topology in plain Node (a TCP
 *   server process piping each connection through `cat`), and vs a `cat` child's pipes in this
 *   process; each the median of 3 runs of 1 GiB.
 * - RPC throughput is compared with the trivial entity RPC at the same concurrency: the median
 *   of 5 rounds of each, taking turns, after a warm-up round of each.
 * - failover: SIGKILL the runner holding the most of 12 instances; time until all of them run
 *   elsewhere (registry polled every 10 ms), default timings, 3 rounds (p50).
 */
import { Effect, Stream } from "effect"
import type { Sharding } from "effect/cluster/Sharding"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Client from "../src/node/Client.ts"
import { HostClient } from "../src/client/HostClient.ts"
import { InstanceClient } from "../src/client/InstanceClient.ts"
import * as Probe from "../src/node/Probe.ts"
import type { InstanceInfo, InstanceSpec } from "../src/instance/InstanceSpec.ts"
import { spawnNode } from "../test/support/processes.ts"
import { clientRuntime, medianOf3, percentile, pipeThroughput, printTable, runMain, startRunner, tearDown, temporaryStore } from "./support.ts"

const json = process.argv.includes("--json")
const log = (line: string) => {
  if (!json) console.error(line)
}
const STARTS = 200
const CALLS = 3000
/** Calls per throughput round; {@link ROUNDS} rounds of each side, alternating. */
const CONCURRENT_CALLS = 10_000
const ROUNDS = 5
const STREAM_BYTES = 1024 * 1024 * 1024
const CHUNK = 256 * 1024
const cat: InstanceSpec = { program: { _tag: "Command", command: "cat" } }

const sorted = (values: Array<number>) => values.sort((a, b) => a - b)
const chunk = Buffer.alloc(CHUNK, 7)
const input = () => Stream.fromIterable(Array.from({ length: STREAM_BYTES / CHUNK }, () => chunk as Uint8Array))

const rawSpawn = () =>
  new Promise<number>((resolve) => {
    const started = performance.now()
    const child = ChildProcess.spawn("cat", [], { stdio: "pipe" })
    child.once("spawn", () => {
      const took = performance.now() - started
      child.kill("SIGKILL")
      child.once("close", () => resolve(took))
    })
  })

/** Client → plain Node TCP relay process → cat → back, MiB/s. */
const rawRelay = async () => {
  const relay = spawnNode("raw-relay", "scripts/raw-relay.ts")
  const [port] = await relay.waitFor(/^\d+$/m)
  try {
    return await new Promise<number>((resolve) => {
      const socket = Net.connect({ host: "127.0.0.1", port: Number(port), noDelay: true })
      let received = 0
      const started = performance.now()
      socket.on("data", (data: Buffer) => (received += data.length))
      socket.on("end", () => resolve(received / 1024 / 1024 / ((performance.now() - started) / 1000)))
      let sent = 0
      const write = () => {
        while (sent < STREAM_BYTES) {
          sent += CHUNK
          if (!socket.write(chunk)) return socket.once("drain", write)
        }
        socket.end()
      }
      write()
    })
  } finally {
    await relay.kill("SIGKILL")
  }
}

const rawPipe = () => pipeThroughput(ChildProcess.spawn("cat", [], { stdio: "pipe" }), STREAM_BYTES, chunk)

const timeEach = async (count: number, f: () => Promise<unknown>) => {
  const times: Array<number> = []
  for (let i = 0; i < count; i++) {
    const started = performance.now()
    await f()
    times.push(performance.now() - started)
  }
  return sorted(times)
}

type Run = <A, E>(effect: Effect.Effect<A, E, HostClient | InstanceClient | Sharding>) => Promise<A>

/** 1 GiB client → an instance of `spec` → client on one inout connection, in MiB/s. */
const stream = (run: Run, spec: InstanceSpec) =>
  run(Effect.gen(function*() {
    const host = yield* HostClient
    const instances = yield* InstanceClient
    const info = yield* host.start(spec)
    const begun = performance.now()
    const received = yield* instances.inout(info.id, input()).pipe(
      Stream.runFold(() => 0, (n, bytes: Uint8Array) => n + bytes.length)
    )
    const seconds = (performance.now() - begun) / 1000
    if (received !== STREAM_BYTES) return yield* Effect.die(`received ${received} of ${STREAM_BYTES} bytes`)
    yield* instances.kill(info.id, { removeImmediately: true })
    return STREAM_BYTES / 1024 / 1024 / seconds
  }))

/** The median of 3 runs of a stream: each one's `cat` lands on whichever runner holds its id's shard. */
const median3 = (f: () => Promise<number>) => medianOf3(f, (mibS) => mibS)

/** Requests/s of `call` at concurrency 64, over {@link CONCURRENT_CALLS} calls. */
const throughput = async (run: Run, call: (i: number) => Effect.Effect<unknown, unknown, HostClient | InstanceClient | Sharding>) => {
  const started = performance.now()
  await run(Effect.forEach(Array.from({ length: CONCURRENT_CALLS }, (_, i) => i), call, { concurrency: 64, discard: true }))
  return CONCURRENT_CALLS / ((performance.now() - started) / 1000)
}

/**
 * The median requests/s of each call over {@link ROUNDS} rounds, the calls taking turns, after a
 * warm-up round of each at the same concurrency: on a 2-core box one round differs from the next
 * by more than the calls differ, and the first rounds run before the JIT has settled.
 */
const interleaved = async (run: Run, calls: ReadonlyArray<(i: number) => Effect.Effect<unknown, unknown, HostClient | InstanceClient | Sharding>>) => {
  for (const call of calls) await throughput(run, call)
  const rounds = calls.map((): Array<number> => [])
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, call] of calls.entries()) rounds[i]!.push(await throughput(run, call))
  }
  return rounds.map((values) => percentile(sorted(values), 50))
}

/**
 * What the transport carries, on one cluster: info round trips to one of 16 `cat`s, info
 * requests/s at concurrency 64 over them, and a stream through `cat` without line logging.
 */
const transportFigures = async (run: Run, label: string, baseline?: (i: number) => Effect.Effect<unknown, unknown, Sharding>) => {
  log(`${label}: RPC round trips, RPC throughput at concurrency 64, stream`)
  const host = await run(HostClient)
  const instances = await run(InstanceClient)
  const targets = await run(Effect.forEach(Array.from({ length: 16 }, () => host.start(cat)), (e) => e, { concurrency: 16 }))
  await timeEach(500, () => run(instances.info(targets[0]!.id)))
  const rpc = await timeEach(CALLS, () => run(instances.info(targets[0]!.id)))
  const [reqPerSecond, baselineReqPerSecond] = await interleaved(run, [
    (i) => instances.info(targets[i % targets.length]!.id),
    ...(baseline === undefined ? [] : [baseline])
  ])
  const streamed = await median3(() => stream(run, { ...cat, log: [] }))
  await run(Effect.forEach(targets, (info) => instances.kill(info.id, { removeImmediately: true }), { concurrency: 16 }))
  return { rpc, reqPerSecond: reqPerSecond!, baselineReqPerSecond, streamed }
}

/**
 * The same figures on another cluster of 3 runners and a client whose transport is `mode`:
 * `plain` (no security: what it costs) or `tls` (TLS on loopback too, as between machines).
 */
const figuresWith = async (store: Awaited<ReturnType<typeof temporaryStore>>, mode: "plain" | "tls") => {
  const databaseUrl = await store.database(`bench_${mode}`)
  const runners = await Promise.all([1, 2, 3].map((i) => startRunner(`${mode}-${i}`, databaseUrl, { SHARDHUB_TRANSPORT: mode })))
  const runtime = clientRuntime(databaseUrl, Client.layerFromEnv({ applicationName: "shardhub-bench" }), {
    SHARDHUB_TRANSPORT: mode
  })
  try {
    const run: Run = (effect) => runtime.runPromise(effect)
    await run(Effect.flatMap(HostClient, (host) => host.start(cat)))
    return await transportFigures(run, mode)
  } finally {
    await runtime.dispose()
    await Promise.all(runners.map((r) => r.kill("SIGTERM")))
  }
}

const main = async () => {
  const store = await temporaryStore()
  const runners = await Promise.all([1, 2, 3].map((i) => startRunner(`runner-${i}`, store.databaseUrl)))
  const runtime = clientRuntime(store.databaseUrl, Client.layerFromEnv({ applicationName: "shardhub-bench" }))
  const run: Run = (effect) => runtime.runPromise(effect)
  try {
    const host = await run(HostClient)
    const instances = await run(InstanceClient)
    const probes = await run(Probe.Probe.client)

    // Warm up: connections to every runner, entity activation paths.
    await run(Effect.forEach(Array.from({ length: 32 }, (_, i) => i), (i) => probes(`warm-${i}`).Whoami(), { concurrency: 8 }))
    for (let i = 0; i < 20; i++) await run(Effect.flatMap(host.start(cat), (info) => instances.kill(info.id)))

    log("start of cat → running")
    const rawSpawns = await timeEach(STARTS, rawSpawn)
    const started: Array<InstanceInfo> = []
    const starts = await timeEach(STARTS, async () => started.push(await run(host.start(cat))))
    await run(Effect.forEach(started, (info) => instances.kill(info.id, { removeImmediately: true }), { concurrency: 16 }))

    log("RPC round trips")
    const probe = probes("bench-probe")
    await timeEach(500, () => run(probe.Whoami()))
    const rawRpc = await timeEach(CALLS, () => run(probe.Whoami()))
    const secured = await transportFigures(run, "secured", (i) => probes(`bench-probe-${i % 16}`).Whoami())
    const rawReqPerSecond = secured.baselineReqPerSecond!

    log(`${STREAM_BYTES / 1024 / 1024} MiB client → cat → client`)
    const rawMiBs = await median3(rawPipe)
    const relayMiBs = await median3(rawRelay)
    const streamedLogged = await median3(() => stream(run, cat))

    log("failover after SIGKILL")
    const failovers: Array<number> = []
    const live = [...runners]
    for (let round = 0; round < 3; round++) {
      const placed = await run(Effect.forEach(Array.from({ length: 12 }, () => host.start(cat)), (e) => e, { concurrency: 12 }))
      // Let placement settle (a runner that just joined takes its shards over).
      await new Promise((resolve) => setTimeout(resolve, 3000))
      const now = await run(Effect.forEach(placed, (info) => host.get(info.id)))
      const counts = new Map<string, number>()
      for (const info of now) counts.set(info.runner!, (counts.get(info.runner!) ?? 0) + 1)
      const victimAddress = [...counts].sort((a, b) => b[1] - a[1])[0]![0]
      const victim = live.find((r) => r.address === victimAddress)!
      const moving = now.filter((info) => info.runner === victimAddress).map((info) => info.id)
      const killedAt = performance.now()
      await victim.kill("SIGKILL")
      while (true) {
        const infos = await run(Effect.forEach(moving, (id) => host.get(id)))
        if (infos.every((info) => info.status === "running" && info.runner !== victimAddress)) break
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      failovers.push(performance.now() - killedAt)
      live.splice(live.indexOf(victim), 1)
      live.push(await startRunner(`runner-${4 + round}`, store.databaseUrl))
      await run(Effect.forEach(placed, (info) => instances.kill(info.id, { removeImmediately: true }), { concurrency: 12 }))
    }
    runners.push(...live.filter((r) => !runners.includes(r)))
    sorted(failovers)
    await runtime.dispose()
    await Promise.all(runners.splice(0).map((r) => r.kill("SIGTERM")))
    const plain = await figuresWith(store, "plain")
    const tls = await figuresWith(store, "tls")

    const result = {
      start_cat_p50_ms: percentile(starts, 50),
      raw_spawn_p50_ms: percentile(rawSpawns, 50),
      rpc_p50_us: percentile(secured.rpc, 50) * 1000,
      raw_rpc_p50_us: percentile(rawRpc, 50) * 1000,
      rpc_req_s: secured.reqPerSecond,
      raw_rpc_req_s: rawReqPerSecond,
      stream_mib_s: secured.streamed,
      plain_rpc_p50_us: percentile(plain.rpc, 50) * 1000,
      plain_rpc_req_s: plain.reqPerSecond,
      plain_stream_mib_s: plain.streamed,
      tls_rpc_p50_us: percentile(tls.rpc, 50) * 1000,
      tls_rpc_req_s: tls.reqPerSecond,
      tls_stream_mib_s: tls.streamed,
      stream_logged_mib_s: streamedLogged,
      raw_relay_mib_s: relayMiBs,
      raw_pipe_mib_s: rawMiBs,
      failover_ms: percentile(failovers, 50)
    }
    if (json) {
      console.log(JSON.stringify(result))
      return
    }
    printTable(`cluster: 3 runners, client-only participant (${Os.cpus().length} cores, node ${process.version})`, [
      ["start of cat → running, p50", result.raw_spawn_p50_ms, result.start_cat_p50_ms, "ms"],
      ["start of cat → running, p99", percentile(rawSpawns, 99), percentile(starts, 99), "ms"],
      ["RPC round trip p50 (raw: trivial entity RPC)", result.raw_rpc_p50_us, result.rpc_p50_us, "µs"],
      ["RPC round trip p99", percentile(rawRpc, 99) * 1000, percentile(secured.rpc, 99) * 1000, "µs"],
      ["RPC req/s at concurrency 64", result.raw_rpc_req_s, result.rpc_req_s, "req/s"],
      ["stream client → cat → client (raw: Node TCP relay)", result.raw_relay_mib_s, result.stream_mib_s, "MiB/s"],
      ["same, cat with its default line log", result.raw_relay_mib_s, result.stream_logged_mib_s, "MiB/s"],
      ["stream vs a cat child's pipes in one process", result.raw_pipe_mib_s, result.stream_mib_s, "MiB/s"]
    ])
    printTable("the cost of security: the default, the cluster key (shardhub) vs the same cluster in plain mode (raw)", [
      ["RPC round trip p50", result.plain_rpc_p50_us, result.rpc_p50_us, "µs"],
      ["RPC req/s at concurrency 64", result.plain_rpc_req_s, result.rpc_req_s, "req/s"],
      ["stream client → cat → client", result.plain_stream_mib_s, result.stream_mib_s, "MiB/s"]
    ])
    printTable("the cost of TLS, as between machines: SHARDHUB_TRANSPORT=tls (shardhub) vs plain mode (raw)", [
      ["RPC round trip p50", result.plain_rpc_p50_us, result.tls_rpc_p50_us, "µs"],
      ["RPC req/s at concurrency 64", result.plain_rpc_req_s, result.tls_rpc_req_s, "req/s"],
      ["stream client → cat → client", result.plain_stream_mib_s, result.tls_stream_mib_s, "MiB/s"]
    ])
    console.log(`failover after SIGKILL (p50 of ${failovers.length}): ${result.failover_ms.toFixed(0)} ms (${failovers.map((f) => f.toFixed(0)).join(", ")})`)
  } finally {
    await tearDown({ runtime, runners, store })
  }
}

runMain(main)
