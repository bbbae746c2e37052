/**
 * `npm run machines [-- --json --drain-instances N --topic-mib M --records R]`: a cluster of three "machines" and what a
 * team moving from one box to several relies on, checked from outside.
 *
 * Each machine is a network namespace (see `netns.ts`) with its own `SHARDHUB_HOME` and one
 * runner talking TLS to the others (`SHARDHUB_TRANSPORT=tls`, the between-machines transport).
 * One Postgres serves them all over TCP, as an outside store would: the embedded binary,
 * started standalone by this script, on the bridge. This script is a client-only participant
 * from the host's namespace, over TCP too.
 *
 *   machine 0: runner labels gpu=true,zone=a   machine 1: zone=a   machine 2: zone=b
 *
 * 1. **Placement**: instances that need zone=a or gpu=true, and some that need nothing, each
 *    beating into its own audit file. Every one runs on a runner that meets its requirement;
 *    then machine 1's runner is SIGKILLed and its zone=a instances come back on machine 0, and
 *    nothing placed lands on machine 2 (`placement_ok`).
 * 2. **Bundle**: a directory (a script and a data file) sent as a bundle and run on one
 *    machine; that machine's runner is SIGKILLed and the command runs on another, from that
 *    machine's own unpacked copy (`bundle_moved`).
 * 3. **Drain**: machine 0 drained, `2N` instances started (about N on each of machines 1 and 2),
 *    then machine 1 drained (`--parallel 8`): the time to empty it (`drain_s`), the longest gap
 *    any moved instance had between its old copy's last beat and its new one's first
 *    (`drain_max_gap_ms`).
 * 4. **Topics**: `--topic-mib` (default 1024) MiB from an instance on machine 2 to one in zone a,
 *    through a durable topic (`topic_mib_s`) and through a topic held in a runner's memory
 *    (`topic_memory_mib_s`); then R (default 40 000) numbered records through a durable topic while the
 *    consumer's runner is SIGKILLed: `topic_lost` (must be 0) and `topic_duplicated` (records
 *    its dead process was handed that the next one got again: at least once); again with a
 *    consumer that acknowledges what it consumed (`topic_duplicated_acked`).
 *
 * Throughout, no two copies of any instance may beat at the same time (`overlaps`, over every
 * audit file of the run).
 *
 * Needs root and `ip netns` (iproute2); without them it says so and exits 2.
 */
import { ConfigProvider, Effect, Layer, ManagedRuntime, Redacted, Stream } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { meets } from "../src/base/Labels.ts"
import { HostClient } from "../src/client/HostClient.ts"
import { InstanceClient } from "../src/client/InstanceClient.ts"
import type { InstanceInfo, InstanceSpec } from "../src/instance/InstanceSpec.ts"
import * as Client from "../src/node/Client.ts"
import * as Pack from "../src/sequence/Pack.ts"
import * as EmbeddedPostgres from "../src/store/EmbeddedPostgres.ts"
import * as Store from "../src/store/Store.ts"
import { freePorts, type Spawned, spawnNode } from "../test/support/processes.ts"
import * as Netns from "./netns.ts"
import { forward, runMain } from "./support.ts"
import { runnerNodeOptions } from "../src/base/heap.js"

const json = process.argv.includes("--json")
const flag = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? fallback : Number(process.argv[at + 1])
}
const drainInstances = flag("drain-instances", 200)
const topicMib = flag("topic-mib", 1024)
const recordCount = flag("records", 40_000)
const log = (line: string) => console.error(`${new Date().toISOString().slice(11, 23)} ${line}`)

const labels: ReadonlyArray<Record<string, string>> = [{ gpu: "true", zone: "a" }, { zone: "a" }, { zone: "b" }]

/**
 * A copy's heartbeat: `<pid> <ms>` every 100 ms into its audit file, kept open. Python, because a
 * bash loop costs ~2.5 % of a core per copy (hundreds of them starved the runners' shard-lock
 * refreshes on 2 cores) and a Node process 40 MB.
 */
const beat = (file: string): InstanceSpec["program"] => ({
  _tag: "Command",
  command: "python3",
  args: ["-c", "import os, sys, time\nf = open(sys.argv[1], 'a', buffering=1)\nwhile True:\n    f.write('%d %d\\n' % (os.getpid(), int(time.time() * 1000)))\n    time.sleep(0.1)", file],
  cwd: "/"
})

/** Each pid of an audit file with its first and last beat, ordered by start. */
const copiesOf = (file: string) => {
  const ranges = new Map<number, { pid: number; first: number; last: number }>()
  const text = Fs.existsSync(file) ? Fs.readFileSync(file, "utf8") : ""
  for (const line of text.split("\n")) {
    const [pid, at] = line.split(" ").map(Number)
    if (!pid || !at) continue
    const range = ranges.get(pid)
    if (range === undefined) ranges.set(pid, { pid, first: at, last: at })
    else range.last = Math.max(range.last, at)
  }
  return [...ranges.values()].sort((a, b) => a.first - b.first)
}
const overlapsIn = (file: string) => {
  const copies = copiesOf(file)
  let overlaps = 0
  for (let i = 1; i < copies.length; i++) if (copies[i]!.first <= copies[i - 1]!.last) overlaps++
  return overlaps
}

const main = async () => {
  if (!Netns.available()) {
    console.error("npm run machines needs root and network namespaces (ip netns); this machine has not")
    process.exit(2)
  }
  const network = Netns.create(3)
  const cleanups: Array<() => void> = [() => network.destroy()]
  const home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-machines-"))
  const audit = Path.join(home, "audit")
  Fs.mkdirSync(audit)
  const runners: Array<Spawned | undefined> = [undefined, undefined, undefined]
  try {
    // The outside store: the embedded binary started standalone, reached over TCP on the bridge.
    const server = await Effect.runPromise(EmbeddedPostgres.ensureRunning({ home: Path.join(home, "store") }))
    cleanups.unshift(() => void Effect.runPromise(EmbeddedPostgres.stop(server)).catch(() => {}))
    await Effect.runPromise(Store.ensureDatabase(EmbeddedPostgres.url(server, "postgres"), "shardhub"))
    const storePort = await freePorts(1)
    const forwarder = await forward({ host: network.hostAddress, port: storePort }, EmbeddedPostgres.socketPath(server))
    cleanups.unshift(() => forwarder.kill("SIGKILL"))
    const databaseUrl = Redacted.value(EmbeddedPostgres.url({ ...server, host: network.hostAddress, port: storePort }, "shardhub"))
    const common = { DATABASE_URL: databaseUrl, SHARDHUB_TRANSPORT: "tls", SHARDHUB_GATEWAY_ACCESS_LOG: "false" }

    const runnerPort = await freePorts(1)
    const startRunner = async (i: number) => {
      const runner = spawnNode(`machine-${i}`, "src/main.ts", {
        nodeArgs: runnerNodeOptions,
        wrapper: network.wrapper(i),
        env: {
          ...common,
          SHARDHUB_HOME: Path.join(home, `machine-${i}`),
          SHARDHUB_RUNNER_HOST: network.address(i),
          SHARDHUB_RUNNER_PORT: String(runnerPort),
          SHARDHUB_RUNNER_LABELS: Object.entries(labels[i]!).map(([k, v]) => `${k}=${v}`).join(",")
        }
      })
      cleanups.unshift(() => runner.child.kill("SIGKILL"))
      await runner.waitFor(/^ready/m, 120_000)
      runners[i] = runner
      return runner
    }
    const address = (i: number) => `${network.address(i)}:${runnerPort}`
    const labelsAt = (runner: string) => labels[[0, 1, 2].find((i) => address(i) === runner)!]!

    log(`3 machines in ${home}; store at ${network.hostAddress}:${storePort} over TCP; runners on TLS`)
    await startRunner(0)
    await Promise.all([startRunner(1), startRunner(2)])
    const runtime = ManagedRuntime.make(
      Client.layerFromEnv({ applicationName: "shardhub-machines" }).pipe(
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({
          env: { ...process.env as Record<string, string>, ...common, SHARDHUB_HOME: Path.join(home, "client") }
        })))
      )
    )
    cleanups.unshift(() => void runtime.dispose())
    const run = <A, E>(effect: Effect.Effect<A, E, HostClient | InstanceClient>) => runtime.runPromise(effect)
    const host = <A, E>(f: (host: HostClient["Service"]) => Effect.Effect<A, E>) => run(Effect.flatMap(HostClient, f))
    const records = (ids: ReadonlyArray<string>) => host((host) => Effect.forEach(ids, (id) => host.get(id), { concurrency: 16 }))
    const until = async <A>(what: string, check: () => Promise<A | undefined>, timeoutMs = 60_000) => {
      const deadline = Date.now() + timeoutMs
      while (Date.now() < deadline) {
        const value = await check()
        if (value !== undefined) return value
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      throw new Error(`timed out waiting for ${what}`)
    }
    const allRunning = (ids: ReadonlyArray<string>, ok: (info: InstanceInfo) => boolean = () => true) =>
      until(`${ids.length} instances running`, async () => {
        const infos = await records(ids)
        return infos.every((info) => info.status === "running" && ok(info)) ? infos : undefined
      })
    const placedWell = (infos: ReadonlyArray<InstanceInfo>) =>
      infos.every((info) => meets(labelsAt(info.runner!), info.spec.placement?.on ?? {}))

    // 1. Placement, and failover that respects it.
    const startAll = (specs: ReadonlyArray<readonly [string, InstanceSpec]>) =>
      host((host) => Effect.forEach(specs, ([id, spec]) => host.start(spec, { id, timeoutMs: 60_000 }), { concurrency: 8 }))
    const placedSpec = (id: string, on?: Record<string, string>): readonly [string, InstanceSpec] =>
      [id, { program: beat(Path.join(audit, id)), restart: { mode: "always", backoffMs: 100 }, ...(on === undefined ? {} : { placement: { on } }) }]
    const placed = [
      ...Array.from({ length: 6 }, (_, i) => placedSpec(`zone-a-${i}`, { zone: "a" })),
      ...Array.from({ length: 3 }, (_, i) => placedSpec(`gpu-${i}`, { gpu: "true" })),
      ...Array.from({ length: 6 }, (_, i) => placedSpec(`free-${i}`))
    ]
    log(`placement: starting ${placed.length} instances`)
    await startAll(placed)
    const placedIds = placed.map(([id]) => id)
    const before = await allRunning(placedIds)
    const placementBefore = placedWell(before)
    log(`placement: ${before.map((info) => `${info.id}@${info.runner}`).join(" ")}`)
    await runners[1]!.kill("SIGKILL")
    const after = await allRunning(placedIds, (info) => info.runner !== address(1))
    const placementAfter = placedWell(after) && after.filter((info) => info.runner === address(2)).every((info) => info.spec.placement === undefined)
    log(`placement after machine 1's runner died: ${placementBefore && placementAfter ? "every instance where its labels are" : "MISPLACED"}`)
    await startRunner(1)

    // 2. A bundle moves with its command.
    const dir = Path.join(home, "bundle")
    Fs.mkdirSync(dir)
    const token = Crypto.randomUUID()
    Fs.writeFileSync(Path.join(dir, "token.txt"), `${token}\n`)
    Fs.writeFileSync(Path.join(dir, "run.sh"), "#!/bin/sh\necho \"$(cat token.txt) $(hostname -I 2>/dev/null) $(pwd)\"\nexec sleep 3600\n", { mode: 0o755 })
    const bundle = await host((host) => host.sendBundle(Pack.packDirectory(dir)))
    const bundled = await host((host) => host.start({ program: { _tag: "Command", command: "./run.sh", bundle: bundle.hash }, restart: { mode: "always" } }, { id: "bundled" }))
    const [first] = await allRunning(["bundled"])
    const victim = [0, 1, 2].find((i) => address(i) === first!.runner)!
    await runners[victim]!.kill("SIGKILL")
    const [moved] = await allRunning(["bundled"], (info) => info.runner !== first!.runner)
    // Its line on the new machine: the data file read from that machine's own unpacked copy.
    const newHome = Path.join(home, `machine-${[0, 1, 2].find((i) => address(i) === moved!.runner)}`)
    const line = await until("the bundled command's line on its new machine", async () => {
      const all = await run(Effect.flatMap(InstanceClient, (instances) => Stream.runCollect(instances.logs("bundled"))))
      return all.map((line) => line.text).find((text) => text.startsWith(token) && text.includes(newHome))
    })
    const bundleMoved = line !== undefined && moved!.runner !== first!.runner
    log(`bundle: ran on ${first!.runner}, then on ${moved!.runner} from its own copy (${bundled.id})`)
    await startRunner(victim)
    await run(Effect.flatMap(InstanceClient, (instances) => Effect.forEach([...placedIds, "bundled"], (id) => instances.kill(id, { removeImmediately: true }), { concurrency: 16 })))

    // 3. Drain a runner holding about N instances.
    log(`drain: machine 0 drained, ${drainInstances * 2} instances on machines 1 and 2`)
    await host((host) => Effect.flatMap(host.drain(address(0), { parallel: 8 }), Stream.runDrain))
    const drainIds = Array.from({ length: drainInstances * 2 }, (_, i) => `drain-${i}`)
    // In batches, each running before the next: a burst of hundreds of spawns on 2 cores starves
    // the runners' shard-lock refreshes (see the README's timings).
    for (let i = 0; i < drainIds.length; i += 50) {
      const batch = drainIds.slice(i, i + 50)
      await startAll(batch.map((id) => placedSpec(id)))
      await allRunning(batch)
    }
    const spread = await allRunning(drainIds)
    const onOne = spread.filter((info) => info.runner === address(1)).map((info) => info.id)
    // Every copy beating (none frozen by a fence after the start burst), so that a gap is the
    // drain's, not the start's.
    await until("every copy beating", async () => {
      const now = Date.now()
      return onOne.every((id) => (copiesOf(Path.join(audit, id)).at(-1)?.last ?? 0) > now - 500) || undefined
    }, 120_000)
    log(`drain: machine 1 holds ${onOne.length}; draining it 8 at a time`)
    const drainStart = Date.now()
    await host((host) => Effect.flatMap(host.drain(address(1), { parallel: 8 }), Stream.runDrain))
    const drainS = (Date.now() - drainStart) / 1000
    await allRunning(drainIds, (info) => info.runner === address(2))
    // `running` is stored once the process is spawned, before its first beat; a loaded machine
    // can take seconds to start Python. A copy that never beats stays an infinite gap.
    await until("every moved instance beating on its new machine", async () =>
      onOne.every((id) => copiesOf(Path.join(audit, id)).length >= 2) || undefined).catch(() => undefined)
    const gaps = onOne.map((id) => {
      const copies = copiesOf(Path.join(audit, id))
      return copies.length < 2 ? Infinity : copies[1]!.first - copies[0]!.last
    })
    const drainMaxGapMs = Math.max(...gaps)
    const sortedGaps = [...gaps].sort((a, b) => a - b)
    const drainP50GapMs = sortedGaps[Math.floor(sortedGaps.length / 2)]!
    const worst = onOne[gaps.indexOf(drainMaxGapMs)]!
    log(`drain: ${onOne.length} instances moved in ${drainS.toFixed(1)} s; gap p50 ${drainP50GapMs} ms, longest ${drainMaxGapMs} ms (${worst}: ${
      copiesOf(Path.join(audit, worst)).map((c) => `${c.pid} ${c.first - drainStart}→${c.last - drainStart}`).join(", ")} ms from the drain's start)`)
    await host((host) => Effect.all([host.undrain(address(0)), host.undrain(address(1))]))
    await run(Effect.flatMap(InstanceClient, (instances) => Effect.forEach(drainIds, (id) => instances.kill(id, { removeImmediately: true }), { concurrency: 32 })))

    // 4. Topics between machines: bytes from machine 2 to zone a, durable (the store) and held
    // in a runner's memory; then records across a kill of the consumer's runner.
    const through = async (topic: string, durable: boolean) => {
      await host((host) => host.createTopic(topic, "application/octet-stream", { durable }))
      const total = topicMib * 1024 * 1024
      const count = `let n = 0; process.stdin.on('data', (c) => { n += c.length; if (n >= ${total}) { console.log('done ' + n); setInterval(() => {}, 1000) } })`
      const produce = `const b = Buffer.alloc(65536, 7); let left = ${total / 65536}; const go = () => { while (left > 0) { left--; if (!process.stdout.write(b)) return process.stdout.once('drain', go) } }; go(); setInterval(() => {}, 1000)`
      await host((host) => host.start({ program: { _tag: "Command", command: process.execPath, args: ["-e", count], cwd: "/" }, topics: { input: topic }, placement: { on: { zone: "a" } }, log: ["stdout"] }, { id: `${topic}-in` }))
      const started = Date.now()
      await host((host) => host.start({ program: { _tag: "Command", command: process.execPath, args: ["-e", produce], cwd: "/" }, topics: { output: topic }, placement: { on: { zone: "b" } }, log: [] }, { id: `${topic}-out` }))
      await until(`${topicMib} MiB through ${topic}`, async () => {
        const lines = await run(Effect.flatMap(InstanceClient, (instances) => Stream.runCollect(instances.logs(`${topic}-in`))))
        return lines.some((line) => line.text.startsWith("done")) || undefined
      }, 600_000)
      const mibS = topicMib / ((Date.now() - started) / 1000)
      await run(Effect.flatMap(InstanceClient, (instances) => Effect.forEach([`${topic}-in`, `${topic}-out`], (id) => instances.kill(id, { removeImmediately: true }))))
      return mibS
    }
    const durableMibS = await through("bulk-durable", true)
    const memoryMibS = await through("bulk-memory", false)
    log(`topics: ${topicMib} MiB from machine 2 to zone a: durable ${durableMibS.toFixed(1)} MiB/s, in memory ${memoryMibS.toFixed(1)} MiB/s`)

    const emit = `let i = 0; const pad = 'x'.repeat(90); const t = setInterval(() => { let out = ''; for (let k = 0; k < 200 && i < ${recordCount}; k++) out += (i++) + ' ' + pad + '\\n'; process.stdout.write(out); if (i >= ${recordCount}) clearInterval(t) }, 10); setInterval(() => {}, 1000)`
    /** Numbered records through a durable topic while the consumer's runner is SIGKILLed: what was lost and repeated. */
    const acrossKill = async (topic: string, consumer: (out: string) => InstanceSpec["program"] & { readonly _tag: "Command" }) => {
      await host((host) => host.createTopic(topic, "text/plain", { durable: true }))
      const consumed = Path.join(home, `${topic}.out`)
      const reader = await host((host) => host.start({ program: consumer(consumed), env: { set: { OUT: consumed } }, topics: { input: topic }, restart: { mode: "always", backoffMs: 100 }, placement: { on: { zone: "a" } } }, { id: `${topic}-in` }))
      await host((host) => host.start({ program: { _tag: "Command", command: process.execPath, args: ["-e", emit], cwd: "/" }, topics: { output: topic }, placement: { on: { zone: "b" } } }, { id: `${topic}-out` }))
      const consumedLines = () => Fs.existsSync(consumed) ? Fs.readFileSync(consumed, "utf8").split("\n").filter(Boolean) : []
      await until("a quarter of the records", async () => consumedLines().length > recordCount / 4 || undefined)
      const readerMachine = [0, 1, 2].find((i) => address(i) === reader.runner)!
      await runners[readerMachine]!.kill("SIGKILL")
      const got = await until("the last record", async () => {
        const lines = consumedLines()
        return Number(lines.at(-1)?.split(" ")[0]) === recordCount - 1 ? lines : undefined
      }, 120_000)
      const seen = new Set<number>()
      let duplicated = 0
      for (const line of got) {
        const n = Number(line.split(" ")[0])
        if (seen.has(n)) duplicated++
        seen.add(n)
      }
      await startRunner(readerMachine)
      await run(Effect.flatMap(InstanceClient, (instances) => Effect.forEach([`${topic}-in`, `${topic}-out`], (id) => instances.kill(id, { removeImmediately: true }))))
      return { lost: recordCount - seen.size, duplicated }
    }
    const plain = await acrossKill("records", (out) => ({ _tag: "Command", command: "sh", args: ["-c", `exec cat >> ${out}`] }))
    log(`topics: ${recordCount} records, the consumer's runner killed: ${plain.lost} lost, ${plain.duplicated} repeated`)
    const acking = await acrossKill("acked-records", () => ({ _tag: "Command", command: process.execPath, args: [Path.join(import.meta.dirname, "../test/instance/fixtures/acking.mjs")] }))
    log(`topics: the same with a consumer that acknowledges: ${acking.lost} lost, ${acking.duplicated} repeated`)

    const files = Fs.readdirSync(audit).map((name) => Path.join(audit, name))
    const overlaps = files.reduce((sum, file) => sum + overlapsIn(file), 0)
    const result = {
      machines: 3,
      transport: "tls",
      store: "postgres over tcp",
      placement_ok: placementBefore && placementAfter,
      bundle_moved: bundleMoved,
      drain_instances: onOne.length,
      drain_s: Number(drainS.toFixed(2)),
      drain_p50_gap_ms: drainP50GapMs,
      drain_max_gap_ms: drainMaxGapMs,
      overlaps,
      topic_lost: plain.lost + acking.lost,
      topic_duplicated: plain.duplicated,
      topic_duplicated_acked: acking.duplicated,
      topic_mib_s: Number(durableMibS.toFixed(1)),
      topic_memory_mib_s: Number(memoryMibS.toFixed(1))
    }
    if (json) console.log(JSON.stringify(result))
    else {
      console.log("\nseveral machines (3 network namespaces, TLS between runners, Postgres over TCP)")
      for (const [key, value] of Object.entries(result)) console.log(`  ${key.padEnd(24)} ${value}`)
    }
  } catch (error) {
    // What the machines said, to tell why.
    for (const [i, runner] of runners.entries()) {
      if (runner === undefined) continue
      const warnings = runner.output().split("\n").filter((line) => /\] (WARN|ERROR)/.test(line)).slice(0, 12).map((line) => line.slice(0, 300))
      log(`machine ${i}: ${warnings.length === 0 ? "no warnings" : `first warnings:\n${warnings.join("\n")}`}`)
    }
    throw error
  } finally {
    for (const cleanup of cleanups) {
      try {
        cleanup()
      } catch {
        // already gone
      }
    }
    Fs.rmSync(home, { recursive: true, force: true })
  }
}

runMain(main)
