/**
 * `npm run chaos [-- --cycles N --seed S --instances K --faults kill,freeze,… --loopback --json]`: faults against a real cluster,
 * checked from outside.
 *
 * Three runner processes on the embedded store (default timings), K instances (default 24) with
 * `restart: always` that append a heartbeat (`<pid> <ms>`) to their own audit file every 50 ms,
 * then N seeded cycles, each one fault:
 *
 * - `kill`: SIGKILL a runner, then start it again;
 * - `freeze`: SIGSTOP a runner for the lock expiration plus 3 s, then SIGCONT;
 * - `term`: SIGTERM a runner (it must exit within 30 s), then start it again;
 * - `store`: SIGKILL the embedded Postgres postmaster;
 * - `partition`: cut a runner off the network for the lock expiration plus 3 s, then reconnect it.
 *
 * Runners run in their own network namespaces (see `netns.ts`) joined by veth links to a bridge,
 * so a partition is a link taken down for real; the store (embedded, held and healed by this
 * script's client like any participant's) is reached over the bridge. Without root or `ip netns`
 * (or with `--loopback`) the runners share the loopback interface and there is no partition
 * fault.
 *
 * Beside them, one scheduled instance (`* * * * * *`: every second, each run beating for 300 ms
 * into its audit file).
 *
 * During each fault a client starts one more instance. After each cycle, from outside:
 * - recovery: every instance has exactly one live, running (not stopped) process beating again;
 * - no two processes of one instance ever beat at overlapping times (audit files);
 * - the start made during the fault: acknowledged ⇒ running; failed ⇒ never ran (a start whose
 *   outcome is unknown names its id instead of failing);
 * - the schedule goes on: a run starts after the recovery (a tick missed during the fault runs
 *   then), and no two of its runs ever beat at overlapping times.
 */
import { ConfigProvider, Effect, Layer, ManagedRuntime, Option, Redacted } from "effect"
import * as Fs from "node:fs"
import * as ChildProcess from "node:child_process"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import { copySpec } from "../src/client/Apps.ts"
import { HostClient } from "../src/client/HostClient.ts"
import * as Client from "../src/node/Client.ts"
import { InstanceClient } from "../src/client/InstanceClient.ts"
import * as EmbeddedPostgres from "../src/store/EmbeddedPostgres.ts"
import { Store } from "../src/store/Store.ts"
import * as Netns from "./netns.ts"
import { freePorts, processState, type Spawned, spawnNode } from "../test/support/processes.ts"
import { forward, percentile, runMain } from "./support.ts"
import { runnerNodeOptions } from "../src/base/heap.js"

const flag = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? fallback : Number(process.argv[at + 1])
}
const json = process.argv.includes("--json")
const cycles = flag("cycles", 10)
const seed = flag("seed", 1)
const instanceCount = flag("instances", 24)
// Progress goes to stderr in every mode (with --json, stdout carries only the result), so that a
// failed run says which cycle went wrong and how.
const log = (line: string) => console.error(`${new Date().toISOString().slice(11, 23)} ${line}`)

/** mulberry32: the same seed, the same faults. */
const random = (() => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6D2B79F5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
})()
const pick = <A>(items: ReadonlyArray<A>) => items[Math.floor(random() * items.length)]!

const expirationMs = 4000
const allFaults = ["kill", "freeze", "term", "store", "partition"] as const
type Fault = typeof allFaults[number]
const network = !process.argv.includes("--loopback") && Netns.available() ? Netns.create(3) : undefined
/** Undone on any exit, also a failed one: runners killed, namespaces removed. */
const cleanups: Array<() => void> = [() => network?.destroy()]
const chosen = process.argv.includes("--faults") ? process.argv[process.argv.indexOf("--faults") + 1]!.split(",") : allFaults
const faults = allFaults.filter((fault) => chosen.includes(fault) && (fault !== "partition" || network !== undefined))

const beat = "const fs = require('fs'); const f = process.argv[1]; " +
  "setInterval(() => fs.appendFileSync(f, process.pid + ' ' + Date.now() + '\\n'), 50)"
/** A scheduled run: beats for 300 ms, then ends. */
const shortBeat = "const fs = require('fs'); const f = process.argv[1]; " +
  "const b = () => fs.appendFileSync(f, process.pid + ' ' + Date.now() + '\\n'); b(); setInterval(b, 50); " +
  "setTimeout(() => { b(); process.exit(0) }, 300)"


/** Each pid of an audit file with its first and last beat (read on from where the last call stopped). */
const audits = new Map<string, { offset: number; rest: string; ranges: Map<number, { first: number; last: number }> }>()
const beatsOf = (file: string) => {
  const audit = audits.get(file) ?? { offset: 0, rest: "", ranges: new Map() }
  audits.set(file, audit)
  let fd: number
  try {
    fd = Fs.openSync(file, "r")
  } catch {
    return audit.ranges
  }
  try {
    const size = Fs.fstatSync(fd).size
    if (size <= audit.offset) return audit.ranges
    const bytes = Buffer.alloc(size - audit.offset)
    Fs.readSync(fd, bytes, 0, bytes.length, audit.offset)
    audit.offset = size
    const lines = (audit.rest + bytes.toString("utf8")).split("\n")
    audit.rest = lines.pop()!
    for (const line of lines) {
      const [pid, time] = line.split(" ").map(Number)
      if (!Number.isFinite(pid) || !Number.isFinite(time)) continue
      const range = audit.ranges.get(pid!)
      if (range === undefined) audit.ranges.set(pid!, { first: time!, last: time! })
      else range.last = Math.max(range.last, time!)
    }
    return audit.ranges
  } finally {
    Fs.closeSync(fd)
  }
}

/** The longest time without any beat of an audit file in `[from, to]` (how long it was down). */
const downtimeOf = (file: string, from: number, to: number) => {
  let text = ""
  try {
    text = Fs.readFileSync(file, "utf8")
  } catch {
    return to - from
  }
  const times = text.split("\n").map((line) => Number(line.split(" ")[1])).filter((t) => t >= from && t <= to).sort((a, b) => a - b)
  let worst = 0
  let previous = from
  for (const time of times) {
    worst = Math.max(worst, time - previous)
    previous = time
  }
  return Math.max(worst, to - previous)
}

/** The longest time two processes of one audit file beat at once (0: never). */
const overlapOf = (file: string) => {
  const ranges = [...beatsOf(file).values()].sort((a, b) => a.first - b.first)
  let worst = 0
  let end = -Infinity
  for (const range of ranges) {
    if (range.first < end) worst = Math.max(worst, Math.min(end, range.last) - range.first)
    end = Math.max(end, range.last)
  }
  return worst
}

/**
 * A client of a service whose copies share one port (`reusePort`): a request on a new
 * connection every 20 ms, each given 1 s; counts into the current cycle's tally.
 */
const serviceLoad = (port: number) => {
  let tally = { requests: 0, failed: 0 }
  let running = true
  const once = () =>
    new Promise<boolean>((resolve) => {
      const request = Http.get({ host: "127.0.0.1", port, path: "/", agent: false, timeout: 1000 }, (response) => {
        response.resume()
        response.on("end", () => resolve(response.statusCode === 200))
      })
      request.on("timeout", () => request.destroy(new Error("timeout")))
      request.on("error", () => resolve(false))
    })
  const loop = (async () => {
    while (running) {
      const into = tally
      const ok = await once()
      into.requests++
      if (!ok) into.failed++
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })()
  return {
    cycle: () => {
      const ended = tally
      tally = { requests: 0, failed: 0 }
      return ended
    },
    stop: async () => {
      running = false
      await loop
    }
  }
}

/** Processes of an audit file that are alive and running (not stopped, not zombies). */
const runningOf = (file: string) =>
  [...beatsOf(file).keys()].filter((pid) => {
    const state = processState(pid)
    return state !== undefined && state !== "T" && state !== "Z" && state !== "X"
  })

const main = async () => {
  const home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-chaos-"))
  const audit = Path.join(home, "audit")
  Fs.mkdirSync(audit)
  const env = { SHARDHUB_HOME: home, DATABASE_URL: "", SHARDHUB_GATEWAY_ACCESS_LOG: "false" }
  // The client is a participant of the embedded store: it starts it, and heals it when killed.
  const runtime = ManagedRuntime.make(
    Client.layerFromEnv({ applicationName: "shardhub-chaos" }).pipe(
      Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { ...process.env as Record<string, string>, ...env } })))
    )
  )
  const server = Option.getOrThrow((await runtime.runPromise(Effect.service(Store))).embedded)
  let runnerEnv: Record<string, string> = env
  let storeForward: ChildProcess.ChildProcess | undefined
  if (network !== undefined) {
    const port = await freePorts(1)
    storeForward = await forward({ host: network.hostAddress, port }, EmbeddedPostgres.socketPath(server))
    cleanups.unshift(() => storeForward?.kill("SIGKILL"))
    const url = EmbeddedPostgres.url({ ...server, host: network.hostAddress, port }, "shardhub")
    runnerEnv = { ...env, DATABASE_URL: Redacted.value(url) }
  }
  const first = await freePorts(3)
  const runners: Array<Spawned | undefined> = [undefined, undefined, undefined]
  const startRunner = async (i: number) => {
    const runner = spawnNode(`runner-${i}`, "src/main.ts", {
      nodeArgs: runnerNodeOptions,
      ...(network === undefined ? {} : { wrapper: network.wrapper(i) }),
      env: {
        ...runnerEnv,
        SHARDHUB_RUNNER_HOST: network?.address(i) ?? "127.0.0.1",
        SHARDHUB_RUNNER_PORT: String(first + i),
        SHARDHUB_RUNNER_STATE_DIR: Path.join(home, `runner-${i}`)
      }
    })
    cleanups.unshift(() => runner.child.kill("SIGKILL"))
    await runner.waitFor(/^ready/m, 120_000)
    runners[i] = runner
  }
  log(`starting 3 runners in ${home}${network === undefined ? " (loopback)" : " (own network namespaces)"}`)
  await startRunner(0)
  await Promise.all([startRunner(1), startRunner(2)])
  /** An instance that beats into its own audit file, restarted whenever it ends. */
  const startBeating = (id: string) =>
    Effect.flatMap(HostClient, (host) =>
      host.start({
        program: { _tag: "Command", command: process.execPath, args: ["-e", beat, Path.join(audit, id)], cwd: "/" },
        restart: { mode: "always", backoffMs: 100 }
      }, { id, timeoutMs: 30_000 }))
  const start = (id: string) => runtime.runPromise(startBeating(id))

  const ids = Array.from({ length: instanceCount }, (_, i) => `chaos-${i}`)
  log(`starting ${instanceCount} instances`)
  for (let i = 0; i < ids.length; i += 8) await Promise.all(ids.slice(i, i + 8).map((id) => start(id)))
  // A scheduled app, every second: its runs must never overlap, and it must go on after each fault.
  const cronFile = Path.join(audit, "cron-0")
  await runtime.runPromise(Effect.flatMap(HostClient, (host) =>
    host.start({
      program: { _tag: "Command", command: process.execPath, args: ["-e", shortBeat, cronFile], cwd: "/" },
      schedule: { cron: "* * * * * *" }
    }, { id: "cron-0", timeoutMs: 30_000 })))

  // On a shared loopback, 3 copies of a service sharing one port (reusePort) under a client: what
  // a fault costs its users (a frozen copy still holds its listening socket). In namespaces each
  // runner has its own loopback, so there is no shared port to measure.
  let service: ReturnType<typeof serviceLoad> | undefined
  if (network === undefined) {
    const port = await freePorts(1)
    const template = {
      program: { _tag: "Command" as const, command: process.execPath, args: [Path.join(import.meta.dirname, "../test/instance/fixtures/service.mjs")], cwd: "/" },
      env: { set: { PORT: String(port), READY: "message" } },
      readiness: { _tag: "Message" as const, timeoutMs: 10_000 },
      restart: { mode: "always" as const, backoffMs: 100 }
    }
    await runtime.runPromise(Effect.flatMap(HostClient, (host) =>
      Effect.forEach([0, 1, 2], (i) => host.start(copySpec(template, "svc", i), { id: `svc-${i}`, timeoutMs: 30_000 }), { discard: true })))
    service = serviceLoad(port)
  }

  const results: Array<{
    fault: Fault
    recoveryMs: number | undefined
    overlapMs: number
    duplicates: number
    lostAck: number
    failedRan: number
    died: number
    slowTerm: number
    scheduleStalled: number
    service: { readonly requests: number; readonly failed: number }
  }> = []

  /** Waits until every instance has exactly one running process, beating now. */
  const recovered = async (timeoutMs = 90_000) => {
    const deadline = Date.now() + timeoutMs
    const healthy = (id: string, now: number) => {
      const file = Path.join(audit, id)
      const running = runningOf(file)
      return running.length === 1 && (beatsOf(file).get(running[0]!)?.last ?? 0) > now - 500
    }
    while (Date.now() < deadline) {
      if (ids.every((id) => healthy(id, Date.now()))) return true
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    // Say what is wrong: each instance's processes (state, beats) and its record.
    const now = Date.now()
    for (const id of ids.filter((id) => !healthy(id, now))) {
      const record = await runtime.runPromise(Effect.flatMap(HostClient, (host) => Effect.option(host.get(id))))
      const pids = [...beatsOf(Path.join(audit, id))].map(([pid, range]) => `${pid}:${processState(pid) ?? "gone"}:${now - range.last} ms ago`)
      log(`  not recovered ${id}: record ${JSON.stringify(Option.map(record, ({ desired, epoch, pid, reason, runner, status }) => ({ status, desired, reason, runner, pid, epoch })))}; ` +
        `processes ${pids.slice(-4).join(", ")}`)
    }
    for (const [i, runner] of runners.entries()) log(`  runner-${i} output tail:\n${runner?.output().slice(-1500)}`)
    return false
  }

  for (let cycle = 1; cycle <= cycles; cycle++) {
    const fault = pick(faults)
    const target = Math.floor(random() * 3)
    const probe = `probe-${cycle}`
    const t0 = Date.now()
    service?.cycle()
    let slowTerm = 0
    log(`cycle ${cycle}: ${fault}${fault === "store" ? "" : ` runner-${target}`}`)
    // A start during the fault: acknowledged, failed, or unconfirmed with its id named; it must
    // tell the truth (acknowledged ⇒ runs; failed ⇒ never runs).
    // A start that dies (a defect, not an answer) hides its outcome: that is a violation too.
    const outcome = runtime.runPromise(startBeating(probe).pipe(Effect.match({
      onSuccess: () => "acknowledged" as const,
      onFailure: (error) => error._tag === "StartUnconfirmed" && error.outcome === "unconfirmed" ? "unconfirmed" as const : "failed" as const
    }))).catch((defect) => {
      log(`  the start died: ${defect}`)
      return "died" as const
    })
    switch (fault) {
      case "kill":
        await runners[target]!.kill("SIGKILL")
        await startRunner(target)
        break
      case "freeze":
        runners[target]!.child.kill("SIGSTOP")
        await new Promise((resolve) => setTimeout(resolve, expirationMs + 3000))
        runners[target]!.child.kill("SIGCONT")
        break
      case "term": {
        const exited = await Promise.race([
          runners[target]!.kill("SIGTERM").then(() => true),
          new Promise<false>((resolve) => setTimeout(() => resolve(false), 30_000))
        ])
        if (!exited) {
          slowTerm = 1
          await runners[target]!.kill("SIGKILL")
        }
        await startRunner(target)
        break
      }
      case "store": {
        const pid = Number(Fs.readFileSync(Path.join(home, "postgres", "data", "postmaster.pid"), "utf8").split("\n")[0])
        process.kill(pid, "SIGKILL")
        break
      }
      case "partition":
        network!.link(target, false)
        await new Promise((resolve) => setTimeout(resolve, expirationMs + 3000))
        network!.link(target, true)
        break
    }
    // Let the cluster react (a lost store or lease shows only after the lock expiration).
    await new Promise((resolve) => setTimeout(resolve, expirationMs + 2000))
    const back = await recovered()
    const answered = await outcome
    const probeFile = Path.join(audit, probe)
    // Acknowledged: it runs (give it the recovery time); failed: it must never have run.
    let lostAck = 0
    let failedRan = 0
    if (answered === "acknowledged") {
      const deadline = Date.now() + 30_000
      while (runningOf(probeFile).length !== 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
      if (runningOf(probeFile).length !== 1) {
        lostAck = 1
        const record = await runtime.runPromise(Effect.flatMap(HostClient, (host) => Effect.option(host.get(probe))))
        const pids = [...beatsOf(probeFile)].map(([pid, range]) => `${pid}:${processState(pid) ?? "gone"}:${range.first}-${range.last}`)
        log(`  lost acknowledged start ${probe}: record ${JSON.stringify(record)}; processes ${pids.join(", ") || "none"}`)
      }
    } else if ((answered === "failed" || answered === "died") && beatsOf(probeFile).size > 0) {
      failedRan = 1
    }
    const died = answered === "died" ? 1 : 0
    // The schedule goes on: a run starts after the recovery (a tick missed meanwhile runs then).
    const runsBefore = beatsOf(cronFile).size
    const cronDeadline = Date.now() + 30_000
    while (beatsOf(cronFile).size <= runsBefore && Date.now() < cronDeadline) await new Promise((resolve) => setTimeout(resolve, 100))
    const scheduleStalled = beatsOf(cronFile).size > runsBefore ? 0 : 1
    if (scheduleStalled) {
      const record = await runtime.runPromise(Effect.flatMap(HostClient, (host) => Effect.option(host.get("cron-0"))))
      log(`  the schedule stalled: record ${JSON.stringify(record)}`)
    }
    await runtime.runPromise(Effect.flatMap(InstanceClient, (instances) =>
      instances.kill(probe, { removeImmediately: true }).pipe(Effect.ignore)))
    const audited = [...ids.map((id) => Path.join(audit, id)), probeFile, cronFile]
    const overlapMs = Math.max(...audited.map(overlapOf))
    for (const file of audited.filter((file) => overlapOf(file) > 0)) {
      const pids = [...beatsOf(file)].map(([pid, range]) => `${pid}:${processState(pid) ?? "gone"}:${range.first}-${range.last}`)
      log(`  overlap in ${Path.basename(file)}: processes ${pids.slice(-6).join(", ")}`)
      // Each process's beats as runs of 50 ms (a gap: it was stopped).
      const runs = new Map<string, Array<[number, number]>>()
      for (const line of Fs.readFileSync(file, "utf8").split("\n").filter(Boolean)) {
        const [pid, at] = line.split(" ")
        const spans = runs.get(pid!) ?? []
        const last = spans.at(-1)
        if (last !== undefined && Number(at) - last[1] < 500) last[1] = Number(at)
        else spans.push([Number(at), Number(at)])
        runs.set(pid!, spans)
      }
      log(`    beats: ${[...runs].slice(-3).map(([pid, spans]) => `${pid}: ${spans.map(([a, b]) => `${a}-${b}`).join(" ")}`).join("; ")}`)
    }
    const duplicates = ids.filter((id) => runningOf(Path.join(audit, id)).length > 1).length
    // Recovery: the longest any instance went without a beat since the fault began.
    const now = Date.now()
    const downtime = Math.max(...ids.map((id) => downtimeOf(Path.join(audit, id), t0, now)))
    const served = service?.cycle() ?? { requests: 0, failed: 0 }
    const result = { fault, recoveryMs: back ? downtime : undefined, overlapMs, duplicates, lostAck, failedRan, died, slowTerm, scheduleStalled, service: served }
    results.push(result)
    log(`  recovered in ${result.recoveryMs ?? "—"} ms; overlap ${overlapMs} ms; duplicates ${duplicates}; ` +
      `probe ${answered}${lostAck ? " but not running" : ""}${failedRan ? " but ran" : ""}; scheduled runs ${beatsOf(cronFile).size}` +
      (service === undefined ? "" : `; service requests ${served.requests}, failed ${served.failed}`))
  }

  // Every runner must answer SIGTERM.
  await service?.stop()
  await runtime.dispose()
  const stopped = await Promise.all(runners.map((runner) =>
    Promise.race([runner!.kill("SIGTERM").then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 30_000))])))
  for (const runner of runners) await runner!.kill("SIGKILL")
  const slowShutdown = stopped.filter((ok) => !ok).length
  storeForward?.kill("SIGKILL")
  Fs.rmSync(home, { recursive: true, force: true })

  const summary = faults.map((fault) => {
    const of = results.filter((r) => r.fault === fault)
    const times = of.map((r) => r.recoveryMs).filter((ms): ms is number => ms !== undefined).sort((a, b) => a - b)
    return {
      fault,
      cycles: of.length,
      recovery_p50_ms: percentile(times, 50),
      recovery_max_ms: times.at(-1) ?? NaN,
      not_recovered: of.filter((r) => r.recoveryMs === undefined).length,
      overlap_max_ms: Math.max(0, ...of.map((r) => r.overlapMs)),
      duplicates: of.reduce((n, r) => n + r.duplicates, 0),
      lost_acknowledged_starts: of.reduce((n, r) => n + r.lostAck, 0),
      failed_starts_that_ran: of.reduce((n, r) => n + r.failedRan, 0),
      starts_that_died: of.reduce((n, r) => n + r.died, 0),
      slow_sigterm: of.reduce((n, r) => n + r.slowTerm, 0),
      schedule_stalls: of.reduce((n, r) => n + r.scheduleStalled, 0),
      service_requests: of.reduce((n, r) => n + r.service.requests, 0),
      service_failed: of.reduce((n, r) => n + r.service.failed, 0)
    }
  })
  const violations = summary.reduce((n, s) =>
    n + s.not_recovered + (s.overlap_max_ms > 0 ? 1 : 0) + s.duplicates + s.lost_acknowledged_starts + s.failed_starts_that_ran + s.starts_that_died + s.slow_sigterm + s.schedule_stalls, 0) +
    slowShutdown
  if (json) {
    console.log(JSON.stringify({ seed, cycles, instances: instanceCount, summary, slow_shutdown: slowShutdown, violations }))
  } else {
    console.log(`\nchaos: ${cycles} cycles, seed ${seed}, ${instanceCount} instances, 3 runners ${
      network === undefined ? "on loopback" : "in network namespaces"
    } (${Os.cpus().length} cores)\n`)
    console.log("| fault | cycles | recovery p50 | recovery max | not recovered | overlap max | duplicates | lost acked starts | failed starts that ran | starts that died | slow SIGTERM | schedule stalls |")
    console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (const s of summary) {
      console.log(`| ${s.fault} | ${s.cycles} | ${Number.isNaN(s.recovery_p50_ms) ? "—" : `${(s.recovery_p50_ms / 1000).toFixed(1)} s`} | ` +
        `${Number.isNaN(s.recovery_max_ms) ? "—" : `${(s.recovery_max_ms / 1000).toFixed(1)} s`} | ${s.not_recovered} | ${s.overlap_max_ms} ms | ` +
        `${s.duplicates} | ${s.lost_acknowledged_starts} | ${s.failed_starts_that_ran} | ${s.starts_that_died} | ${s.slow_sigterm} | ${s.schedule_stalls} |`)
    }
    if (network === undefined) {
      console.log("\na service of 3 copies sharing a port (reusePort), a new connection every 20 ms, 1 s each (measured, not a violation):\n")
      console.log("| fault | requests | failed or hung |")
      console.log("| --- | ---: | ---: |")
      for (const s of summary) console.log(`| ${s.fault} | ${s.service_requests} | ${s.service_failed} |`)
    }
    console.log(`\nrunners that did not stop on SIGTERM within 30 s at the end: ${slowShutdown}; violations: ${violations}`)
  }
  if (violations > 0) throw new Error(`chaos: ${violations} violations`)
}

const cleanUp = () => {
  for (const cleanup of cleanups.splice(0)) cleanup()
}
process.once("exit", cleanUp)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    cleanUp()
    process.exit(130)
  })
}
runMain(() => main().finally(cleanUp))
