/**
 * Deploying services on two runner processes: readiness (a ready message, a TCP check, a
 * timeout), liveness checks that restart a hung program, and rolling replacement with revert.
 */
import { Effect, Stream } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import { copySpec } from "../../src/client/Apps.ts"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import * as Rollout from "../../src/client/Rollout.ts"
import type { InstanceSpec } from "../../src/instance/InstanceSpec.ts"
import { useCluster } from "../support/cluster.ts"
import { root } from "../support/processes.ts"

const fixture = Path.join(root, "test/instance/fixtures/service.mjs")

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = Net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const service = (port: number, env: Record<string, string>, extra: Partial<InstanceSpec> = {}): InstanceSpec => ({
  program: { _tag: "Command", command: process.execPath, args: [fixture] },
  env: { set: { PORT: String(port), ...env } },
  ...extra
})

const poll = <A>(read: Effect.Effect<A, unknown, HostClient>, until: (a: A) => boolean) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 20_000
    for (;;) {
      const value = yield* read
      if (until(value)) return value
      if (Date.now() > deadline) return yield* Effect.die(new Error(`condition not met in 20 s: ${JSON.stringify(value)}`))
      yield* Effect.sleep("50 millis")
    }
  })

/**
 * What a beats file (`<key> <pid> <ms>` lines, one every 50 ms while a process lives) says: each
 * process from its first beat to its last, with its key (a copy's index).
 */
const spansOf = (beats: string) => {
  const spans = new Map<string, { key: string; from: number; to: number }>()
  const lines = Fs.existsSync(beats) ? Fs.readFileSync(beats, "utf8").split("\n").filter(Boolean) : []
  for (const line of lines) {
    const [key, pid, at] = line.split(" ")
    const span = spans.get(pid!) ?? { key: key!, from: Number(at), to: Number(at) }
    span.to = Number(at)
    spans.set(pid!, span)
  }
  return [...spans.values()]
}

/** The keys of which two processes beat at overlapping times (never, for one index or schedule). */
const overlapsIn = (beats: string) => {
  const spans = spansOf(beats)
  const found: Array<string> = []
  for (const a of spans) for (const b of spans) if (a !== b && a.key === b.key && a.from <= b.from && b.from <= a.to) found.push(a.key)
  return found
}

/** A fresh beats file. */
const beatsFile = () => Path.join(Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-deploy-")), "beats")

/** Copies 0…count-1 of app `name` from `template`, each running (ready), as now on record. */
const startCopies = (template: InstanceSpec, name: string, count: number) =>
  Effect.gen(function*() {
    const host = yield* HostClient
    const started = yield* Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => host.start(copySpec(template, name, i)))
    return yield* Effect.forEach(started, (info) => poll(host.get(info.id), (i) => i.status === "running"))
  })

describe("deploying services", () => {
  const cluster = useCluster("deploy", { runners: 2 })

  it("is starting until its ready message, then running", async () => {
    cluster.printOnFailure()
    const port = await freePort()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const started = yield* host.start(service(port, { READY: "late", READY_DELAY: "800" }, {
        readiness: { _tag: "Check", check: { _tag: "Tcp", port }, timeoutMs: 10_000, intervalMs: 50 }
      }))
      const ready = yield* poll(host.get(started.id), (info) => info.status !== "starting")
      yield* Effect.flatMap(InstanceClient, (c) => c.kill(started.id, { removeImmediately: true }))
      return { started, ready }
    }))
    expect(result.started.status).toBe("starting")
    expect(result.started.pid).toBeGreaterThan(0)
    expect(result.ready).toMatchObject({ status: "running", pid: result.started.pid, restarts: 0 })

    // PM2's wait_ready: process.send("ready") on a Node program.
    const port2 = await freePort()
    const message = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const started = yield* host.start(service(port2, { READY: "message" }, { readiness: { _tag: "Message", timeoutMs: 10_000 } }))
      const ready = yield* poll(host.get(started.id), (info) => info.status !== "starting")
      yield* Effect.flatMap(InstanceClient, (c) => c.kill(started.id, { removeImmediately: true }))
      return ready
    }))
    expect(message).toMatchObject({ status: "running", restarts: 0 })
  })

  it("is not ready in time: killed with ReadyTimeout and restarted by its policy, the reason on record", async () => {
    cluster.printOnFailure()
    const port = await freePort()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const started = yield* host.start(service(port, { READY: "never" }, {
        readiness: { _tag: "Message", timeoutMs: 300 },
        restart: { mode: "on-failure", maxRestarts: 1, backoffMs: 10 }
      }))
      const restarted = yield* poll(host.get(started.id), (info) => info.restarts >= 1)
      const ended = yield* poll(host.get(started.id), (info) => info.status === "crashed")
      const log = yield* Effect.flatMap(InstanceClient, (c) => Stream.runCollect(c.logs(started.id, { streams: ["log"] })))
      yield* Effect.flatMap(InstanceClient, (c) => c.kill(started.id, { removeImmediately: true }))
      return { restarted, ended, log }
    }))
    expect(result.restarted.reason).toMatch(/^ReadyTimeout: not ready within 300 ms/)
    expect(result.ended.reason).toMatch(/RestartLimitReached|ReadyTimeout/)
    // The log says why, in the program's own log.
    expect(result.log.map((line) => line.text)).toContainEqual(expect.stringMatching(/^shardhub ReadyTimeout: not ready within 300 ms/))
  })

  it("restarts a hung program when its health check fails in a row (SIGSTOP)", async () => {
    cluster.printOnFailure()
    const port = await freePort()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const started = yield* host.start(service(port, {}, {
        liveness: { check: { _tag: "Http", port, path: "/healthz" }, intervalMs: 100, timeoutMs: 200, failures: 3 },
        restart: { mode: "always", backoffMs: 10 }
      }))
      const running = yield* poll(host.get(started.id), (info) => info.status === "running")
      // A healthy program is left alone through several checks.
      yield* Effect.sleep("600 millis")
      const still = yield* host.get(started.id)
      process.kill(running.pid!, "SIGSTOP")
      const restarted = yield* poll(host.get(started.id), (info) => info.restarts >= 1 && info.status === "running")
      yield* Effect.flatMap(InstanceClient, (c) => c.kill(started.id, { removeImmediately: true }))
      return { running, still, restarted }
    }))
    expect(result.still).toMatchObject({ status: "running", restarts: 0, pid: result.running.pid })
    expect(result.restarted.pid).not.toBe(result.running.pid)
    expect(result.restarted.reason).toMatch(/^LivenessFailed: http 127\.0\.0\.1:\d+\/healthz failed 3 times in a row/)
    expect(() => process.kill(result.running.pid!, 0)).toThrow()
  })

  it("reloads copies one at a time: all replaced, never two of one index at once", async () => {
    cluster.printOnFailure()
    const port = await freePort()
    const beats = beatsFile()
    const template = service(port, { READY: "message", BEATS: beats }, { readiness: { _tag: "Message", timeoutMs: 10_000 } })
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const old = yield* startCopies(template, "web", 3)
      const events: Array<Rollout.Event> = []
      const report = yield* Rollout.rollout(
        old.map((info) => ({ name: info.name!, old: info, spec: info.spec })),
        { parallel: 1, minHealthyMs: 100 },
        (event) => Effect.sync(() => void events.push(event))
      )
      const live = (yield* host.list({ statuses: ["running", "starting", "stopping"] })).filter((info) => info.name?.startsWith("web-"))
      const after = yield* Effect.forEach(old, (info) => host.get(info.id))
      yield* Effect.forEach(live, (info) => Effect.flatMap(InstanceClient, (c) => c.kill(info.id, { removeImmediately: true })))
      return { old, report, events, live, after }
    }))
    expect(result.report).toMatchObject({ ok: true, reverted: false, failed: [] })
    expect(result.report.replaced.map((r) => r.name)).toEqual(["web-0", "web-1", "web-2"])
    expect(result.live.map((info) => info.name).sort()).toEqual(["web-0", "web-1", "web-2"])
    expect(result.live.every((info) => !result.old.some((o) => o.id === info.id))).toBe(true)
    // The old copies stay on record, stopped.
    expect(result.after.map((info) => info.status)).toEqual(["stopped", "stopped", "stopped"])
    // One at a time: each old copy stopped, its new copy started and ready, before the next.
    expect(result.events.map((e) => `${e._tag} ${e.name}`)).toEqual([
      "Stopped web-0", "Started web-0", "Ready web-0",
      "Stopped web-1", "Started web-1", "Ready web-1",
      "Stopped web-2", "Started web-2", "Ready web-2"
    ])
    // Six processes beat (3 old, 3 new), and never two of one index at once.
    expect(spansOf(beats)).toHaveLength(6)
    expect(overlapsIn(beats)).toEqual([])
  })

  it("with surge, starts each new copy and waits until it is ready before the old one stops", async () => {
    cluster.printOnFailure()
    const port = await freePort()
    const template = service(port, { READY: "message" }, { readiness: { _tag: "Message", timeoutMs: 10_000 } })
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const [old] = yield* startCopies(template, "solo", 1)
      const events: Array<Rollout.Event> = []
      const report = yield* Rollout.rollout(Rollout.again([old!]), { surge: true }, (event) =>
        Effect.gen(function*() {
          // When the new copy is ready, the old one still runs.
          if (event._tag === "Ready") events.push({ ...event, name: `${event.name} (old ${(yield* host.get(old!.id)).status})` })
          else events.push(event)
        }).pipe(Effect.orDie))
      const live = (yield* host.list({ statuses: ["running"] })).filter((info) => info.name === "solo-0")
      yield* Effect.forEach(live, (info) => Effect.flatMap(InstanceClient, (c) => c.kill(info.id, { removeImmediately: true })))
      return { report, events, live, old: old! }
    }))
    expect(result.report).toMatchObject({ ok: true })
    expect(result.events.map((e) => `${e._tag} ${e.name}`)).toEqual(["Started solo-0", "Ready solo-0 (old running)", "Stopped solo-0"])
    expect(result.live.map((info) => info.id)).not.toContain(result.old.id)
    expect(result.live).toHaveLength(1)
  })

  it("stops a rollout whose new copy never becomes ready and puts the old copies back", async () => {
    cluster.printOnFailure()
    const port = await freePort()
    const template = service(port, { READY: "message" }, { readiness: { _tag: "Message", timeoutMs: 10_000 } })
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const old = yield* startCopies(template, "api", 3)
      const broken = (info: typeof old[number]): InstanceSpec => ({
        ...info.spec,
        env: { set: { ...info.spec.env?.set, READY: "never", VERSION: "v2" } },
        readiness: { _tag: "Message", timeoutMs: 400 }
      })
      const report = yield* Rollout.rollout(
        old.map((info) => ({ name: info.name!, old: info, spec: broken(info) })),
        { parallel: 1 },
        () => Effect.void
      )
      const after = yield* Effect.forEach(old, (info) => host.get(info.id))
      const live = (yield* host.list()).filter((info) => info.name?.startsWith("api-"))
      yield* Effect.forEach(live, (info) => Effect.flatMap(InstanceClient, (c) => c.kill(info.id, { removeImmediately: true })))
      return { report, after, live }
    }))
    expect(result.report.ok).toBe(false)
    expect(result.report.reverted).toBe(true)
    expect(result.report.failed).toHaveLength(1)
    expect(result.report.failed[0]!.reason).toMatch(/ReadyTimeout/)
    // The old copies run again, and nothing of the new version is left.
    expect(result.after.map((info) => info.status)).toEqual(["running", "running", "running"])
    expect(result.live.map((info) => info.id).sort()).toEqual(result.after.map((info) => info.id).sort())
  })
})

describe("a reload through a runner kill", () => {
  const cluster = useCluster("deploy-kill", { runners: 3 })

  it("ends with every copy ready, never two processes of one index at once", async () => {
    cluster.printOnFailure()
    const port = await freePort()
    const beats = beatsFile()
    const template = service(port, { READY: "message", BEATS: beats }, { readiness: { _tag: "Message", timeoutMs: 10_000 } })
    const old = await cluster.run(startCopies(template, "svc", 4))
    // The runner of the last copy dies while the first ones are being replaced.
    const victim = cluster.runners.find((r) => r.address === old[3]!.runner)!
    let killed = false
    const report = await cluster.run(Rollout.rollout(
      old.map((info) => ({ name: info.name!, old: info, spec: info.spec })),
      { parallel: 1, minHealthyMs: 100 },
      (event) =>
        event._tag === "Ready" && !killed
          ? Effect.promise(async () => {
            killed = true
            await victim.kill("SIGKILL")
          })
          : Effect.void
    ))
    const live = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      return yield* poll(
        Effect.map(host.list({ statuses: ["starting", "running", "stopping"] }), (all) => all.filter((info) => info.name?.startsWith("svc-"))),
        (copies) => copies.length === 4 && copies.every((info) => info.status === "running")
      )
    }))
    expect(killed).toBe(true)
    expect(report).toMatchObject({ ok: true, reverted: false })
    expect(live.map((info) => info.name).sort()).toEqual(["svc-0", "svc-1", "svc-2", "svc-3"])
    expect(live.every((info) => info.runner !== victim.address)).toBe(true)
    expect(overlapsIn(beats)).toEqual([])
    await cluster.run(Effect.flatMap(InstanceClient, (c) => Effect.forEach(live, (info) => c.kill(info.id, { removeImmediately: true }))))
  })
})

describe("scheduled instances", () => {
  const cluster = useCluster("schedules", { runners: 2 })

  /** A program that notes it is alive every 50 ms (its pid and the time) for `seconds`. */
  const noting = (audit: string, seconds: number, cron: string): InstanceSpec => ({
    program: {
      _tag: "Command",
      command: process.execPath,
      args: [
        "-e",
        "const fs = require('fs'); const beat = () => fs.appendFileSync(process.argv[1], `cron ${process.pid} ${Date.now()}\\n`); " +
        "beat(); setInterval(beat, 50); setTimeout(() => { beat(); process.exit(0) }, Number(process.argv[2]) * 1000)",
        audit,
        String(seconds)
      ]
    },
    schedule: { cron }
  })
  const runsIn = (beats: string) => spansOf(beats).length

  it("runs once per tick, never two runs at once (a tick that finds a run going is skipped), until stopped", async () => {
    cluster.printOnFailure()
    const audit = beatsFile()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      // Every second, each run taking 1.5 s: every other tick finds the last run going.
      const started = yield* host.start(noting(audit, 1.5, "* * * * * *"))
      yield* poll(Effect.sync(() => runsIn(audit)), (runs) => runs >= 3)
      const between = yield* poll(host.get(started.id), (info) => info.status === "scheduled")
      const stopped = yield* instances.stop(started.id, { timeoutMs: 5000 })
      const runs = runsIn(audit)
      yield* Effect.sleep("2500 millis")
      const after = yield* host.get(started.id)
      yield* instances.kill(started.id, { removeImmediately: true })
      return { started, between, stopped, runs, later: runsIn(audit), after }
    }))
    expect(result.started).toMatchObject({ status: "scheduled", desired: "running" })
    expect(result.started.nextTickAt).toBeGreaterThan(result.started.createdAt)
    expect(result.between).toMatchObject({ status: "scheduled", desired: "running", exitCode: 0 })
    // Every tick whose last run was over started one: about one run per 2 s, none lost to skipping twice.
    expect(result.runs).toBeGreaterThanOrEqual(3)
    expect(result.stopped).toMatchObject({ desired: "stopped" })
    expect(["stopped"]).toContain(result.after.status)
    // Stopped: no run starts any more.
    expect(result.later).toBe(result.runs)
    expect(overlapsIn(audit)).toEqual([])
  })

  it("goes on ticking on another runner when its runner is killed, never two runs at once", async () => {
    cluster.printOnFailure()
    const audit = beatsFile()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const started = yield* host.start(noting(audit, 0.3, "* * * * * *"))
      yield* poll(Effect.sync(() => runsIn(audit)), (runs) => runs >= 2)
      const before = yield* host.get(started.id)
      const victim = cluster.runners.find((r) => r.address === before.runner)!
      yield* Effect.promise(() => victim.kill("SIGKILL"))
      const runsAtKill = runsIn(audit)
      yield* poll(Effect.sync(() => runsIn(audit)), (runs) => runs >= runsAtKill + 3)
      const after = yield* host.get(started.id)
      yield* Effect.flatMap(InstanceClient, (c) => c.kill(started.id, { removeImmediately: true }))
      return { before, after }
    }))
    expect(result.after.runner).not.toBe(result.before.runner)
    expect(overlapsIn(audit)).toEqual([])
  })
})
