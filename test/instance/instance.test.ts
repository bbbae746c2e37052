/**
 * The Instance entity through a client-only participant (this test process) on three runner
 * processes: placement, every operation, byte-exact streams, events, stop escalation, errors.
 */
import { Cause, Deferred, Effect, Exit, Fiber, Schedule, Stream } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import * as Security from "../../src/transport/Security.ts"
import * as DataPort from "../../src/instance/DataPort.ts"
import * as Instance from "../../src/instance/Instance.ts"
import type { InstanceSpec } from "../../src/instance/InstanceSpec.ts"
import { chunked, concat, sha256 } from "../support/bytes.ts"
import { useCluster } from "../support/cluster.ts"
import { root } from "../support/processes.ts"

const fixture = Path.join(root, "test/instance/fixtures/audited.mjs")
const node = (...args: ReadonlyArray<string>): InstanceSpec => ({
  program: { _tag: "Command", command: process.execPath, args: [fixture, ...args] }
})
const cat: InstanceSpec = { program: { _tag: "Command", command: "cat" } }


describe("instances on three runners", () => {
  const cluster = useCluster("instances", { runners: 3 })

  it("land on different runners and answer every query through the client", async () => {
    cluster.printOnFailure()
    const infos = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      return yield* Effect.forEach(Array.from({ length: 12 }, (_, i) => i), (i) => host.start(node(`n${i}`)), { concurrency: 12 })
    }))
    for (const info of infos) {
      expect(info.status).toBe("running")
      expect(info.pid).toBeGreaterThan(0)
      expect(info.epoch).toBe(1)
    }
    const runners = new Set(infos.map((info) => info.runner))
    expect(runners.size).toBeGreaterThanOrEqual(2)
    for (const runner of runners) expect(cluster.runners.map((r) => r.address)).toContain(runner)

    // The cluster view: every runner healthy, holding shards, running the instances it started.
    const view = await cluster.run(Effect.flatMap(HostClient, (host) => host.runners))
    expect(view.map((row) => row.address).sort()).toEqual(cluster.runners.map((r) => r.address).sort())
    for (const row of view) {
      expect(row).toMatchObject({ healthy: true, instances: infos.filter((info) => info.runner === row.address).length })
      expect(row.shards).toBeGreaterThan(0)
    }

    const id = infos[0]!.id
    const answers = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      return {
        info: yield* instances.info(id),
        health: yield* instances.health(id),
        stats: yield* instances.stats(id),
        record: yield* host.get(id),
        listed: yield* host.list({ statuses: ["running"] })
      }
    }))
    expect(answers.info).toMatchObject({ id, status: "running", desired: "running", pid: infos[0]!.pid })
    expect(answers.record).toMatchObject({ id, status: "running", runner: infos[0]!.runner, pid: infos[0]!.pid })
    expect(answers.health).toMatchObject({ id, status: "running", healthy: true, restarts: 0 })
    expect(answers.health.uptimeMs).toBeGreaterThanOrEqual(0)
    expect(answers.stats.processes).toBeGreaterThanOrEqual(1)
    expect(answers.stats.rssBytes).toBeGreaterThan(0)
    expect(answers.listed.map((i) => i.id)).toEqual(expect.arrayContaining(infos.map((i) => i.id)))

    await cluster.run(Effect.flatMap(InstanceClient, (c) => Effect.forEach(infos, (info) => c.kill(info.id), { concurrency: 12 })))
  })

  it("carries events both ways: next, last (waiting if none yet) and a stream", async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const { id } = yield* host.start(node("events"))
      const hello = yield* instances.lastEvent(id, "hello")
      const collected = yield* instances.events(id, "tick").pipe(Stream.take(3), Stream.runCollect, Effect.forkChild)
      const next = yield* instances.nextEvent(id, "pong").pipe(Effect.forkChild)
      // lastEvent of an event that never fired waits for it.
      const waiting = yield* instances.lastEvent(id, "late").pipe(Effect.forkChild)
      yield* Effect.sleep("200 millis")
      yield* instances.sendEvent(id, "ping", { n: 1 })
      for (let i = 0; i < 3; i++) yield* instances.sendEvent(id, "emit", { name: "tick", data: i })
      yield* instances.sendEvent(id, "emit", { name: "late", data: "now" })
      const result = {
        hello,
        pong: yield* Fiber.join(next),
        ticks: yield* Fiber.join(collected),
        late: yield* Fiber.join(waiting),
        lastTick: yield* instances.lastEvent(id, "tick")
      }
      yield* instances.kill(id)
      return result
    }))
    expect(result.hello.data).toMatchObject({ pid: expect.any(Number) })
    expect(result.pong).toEqual({ name: "pong", data: { n: 1 } })
    expect(result.ticks.map((e) => e.data)).toEqual([0, 1, 2])
    expect(result.late).toEqual({ name: "late", data: "now" })
    expect(result.lastTick).toEqual({ name: "tick", data: 2 })
  })

  it("passes 50 MiB of random bytes through cat byte-exactly, as input/output and as inout", async () => {
    cluster.printOnFailure()
    const data = Crypto.randomBytes(50 * 1024 * 1024)
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const a = yield* host.start({ ...cat, log: [] })
      // Output is lossless from the moment its stream is open (before that, the last 1 MiB is
      // replayed): send one byte, and the rest once it came back.
      const received: Array<Uint8Array> = []
      const open = yield* Deferred.make<void>()
      const output = yield* instances.output(a.id, "stdout").pipe(
        Stream.runForEach((chunk) => Effect.andThen(Effect.sync(() => received.push(chunk)), Deferred.succeed(open, undefined))),
        Effect.forkChild
      )
      yield* instances.input(a.id, chunked(data.subarray(0, 1)), { end: false })
      yield* Deferred.await(open)
      yield* instances.input(a.id, chunked(data.subarray(1)))
      yield* Fiber.join(output)
      const separate = concat(received)
      const b = yield* host.start(cat)
      const together = concat(yield* instances.inout(b.id, chunked(data)).pipe(Stream.runCollect))
      const ended = yield* instances.stop(b.id)
      return { separate, together, ended }
    }))
    expect(result.separate.length).toBe(data.length)
    expect(sha256(result.separate)).toBe(sha256(data))
    expect(result.together.length).toBe(data.length)
    expect(sha256(result.together)).toBe(sha256(data))
    // cat exits by itself once its stdin closed.
    expect(result.ended).toMatchObject({ status: "stopped", exitCode: 0, desired: "stopped" })
  })

  it("says so when the process stops reading before all input was written", async () => {
    cluster.printOnFailure()
    const data = Crypto.randomBytes(16 * 1024 * 1024)
    const head: InstanceSpec = { program: { _tag: "Command", command: "head", args: ["-c", "10"] } }
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const a = yield* host.start(head)
      const input = yield* Effect.exit(instances.input(a.id, chunked(data)))
      const b = yield* host.start(head)
      const inout = yield* Effect.exit(instances.inout(b.id, chunked(data)).pipe(Stream.runCollect))
      return { input, inout }
    }))
    expect(result.input).toMatchObject({ _tag: "Failure" })
    expect(String(Exit.isFailure(result.input) && result.input.cause)).toMatch(/closed its stdin|not running/)
    expect(String(Exit.isFailure(result.inout) && result.inout.cause)).toMatch(/ended before its input was all written/)
  })

  it("keeps stdin open when asked, and serves logs", async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const { id } = yield* host.start(cat)
      const text = (s: string) => Stream.make(new TextEncoder().encode(s))
      yield* instances.input(id, text("one\n"), { end: false })
      yield* instances.input(id, text("two\n"), { stream: "stdin", end: false })
      yield* instances.input(id, text("three\n"))
      const lines = yield* instances.logs(id, { follow: true }).pipe(Stream.take(3), Stream.runCollect)
      const info = yield* instances.stop(id)
      return { lines, info }
    }))
    expect(result.lines.map((l) => l.text)).toEqual(["one", "two", "three"])
    expect(result.info).toMatchObject({ status: "stopped", exitCode: 0 })
  })

  it("a client that resets its input connection mid-stream breaks nothing: no defect, the next input goes through", async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const security = yield* Security.Security
      const { id, runner } = yield* host.start(cat)
      // Open an input that stays open, write a little, and reset the connection (RST, no FIN).
      const ticket = yield* (yield* Instance.Instance.client)(id).Open({ stream: "stdin", end: false })
      const socket = yield* DataPort.dial(ticket, security)
      yield* Effect.callback<void>((resume) => {
        socket.write("before the reset\n", () => resume(Effect.void))
      })
      socket.resetAndDestroy()
      // The instance is still there and takes the next input.
      yield* instances.input(id, Stream.make(new TextEncoder().encode("after\n")), { end: false })
      const lines = yield* instances.logs(id, { follow: true }).pipe(Stream.take(2), Stream.runCollect)
      yield* instances.kill(id)
      return { lines: lines.map((l) => l.text), runner }
    }))
    expect(result.lines).toEqual(["before the reset", "after"])
    const owner = cluster.runners.find((r) => r.address === result.runner)!
    expect(owner.output()).not.toMatch(/TypeError|defect|Cannot read properties of undefined/i)
  })

  it("an input interrupted midway (a writer's Ctrl-C) is not its end: the process keeps its stdin, the next input goes on", async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const { id } = yield* host.start(cat)
      const encode = (s: string) => new TextEncoder().encode(s)
      // A writer that sent a line and waits for more, interrupted before its stream ends.
      const writer = yield* Effect.forkChild(instances.input(id, Stream.concat(Stream.make(encode("first\n")), Stream.never)))
      const log = yield* instances.logs(id, { follow: true }).pipe(Stream.toPull)
      const first = yield* log
      yield* Fiber.interrupt(writer)
      yield* instances.input(id, Stream.make(encode("second\n")))
      const second = yield* log
      const info = yield* instances.stop(id)
      return { lines: [...first, ...second].map((l) => l.text), info }
    }).pipe(Effect.scoped))
    expect(result.lines).toEqual(["first", "second"])
    expect(result.info).toMatchObject({ status: "stopped", exitCode: 0 })
  })

  it("stops a child that ignores SIGTERM with SIGKILL after the timeout", async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const { id } = yield* host.start(node("stubborn", "--ignore-term"))
      yield* instances.lastEvent(id, "hello")
      const started = Date.now()
      const info = yield* instances.stop(id, { timeoutMs: 500 })
      return { info, took: Date.now() - started, record: yield* host.get(id) }
    }))
    expect(result.info).toMatchObject({ status: "stopped", signal: "SIGKILL", desired: "stopped" })
    expect(result.took).toBeGreaterThanOrEqual(500)
    expect(result.record).toMatchObject({ status: "stopped", signal: "SIGKILL" })
  })

  it("gives typed errors: an existing id, unknown ids, a missing program, an invalid id", async () => {
    cluster.printOnFailure()
    const errors = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const { id } = yield* host.start(cat, { id: "fixed-id" })
      const again = yield* Effect.flip(host.start(cat, { id }))
      const unknown = "no-such-instance"
      const missing = yield* Effect.flip(host.start({ program: { _tag: "Command", command: "no-such-program-xyz" } }))
      const result = {
        again,
        info: yield* Effect.flip(instances.info(unknown)),
        stop: yield* Effect.flip(instances.stop(unknown)),
        kill: yield* Effect.flip(instances.kill(unknown)),
        health: yield* Effect.flip(instances.health(unknown)),
        event: yield* Effect.flip(instances.sendEvent(unknown, "x")),
        output: yield* Effect.flip(instances.output(unknown).pipe(Stream.runDrain)),
        get: yield* Effect.flip(host.get(unknown)),
        missing,
        invalid: yield* Effect.flip(host.start(cat, { id: "../bad id" })),
        sequence: yield* Effect.flip(host.start({ program: { _tag: "Sequence", sequenceId: "s" } }))
      }
      yield* instances.kill(id, { removeImmediately: true })
      const removed = yield* Effect.exit(host.get(id))
      return { ...result, removed }
    }))
    expect(errors.again).toMatchObject({ _tag: "InstanceAlreadyExists", id: "fixed-id" })
    for (const key of ["info", "stop", "kill", "health", "event", "output", "get"] as const) {
      expect(errors[key]).toMatchObject({ _tag: "InstanceNotFound", id: "no-such-instance" })
    }
    expect(errors.missing).toMatchObject({ _tag: "StartFailed", reason: "CommandNotFound" })
    expect(errors.invalid).toMatchObject({ _tag: "InvalidSpec" })
    expect(errors.sequence).toMatchObject({ _tag: "InvalidSpec" })
    expect(Exit.isFailure(errors.removed)).toBe(true)
  })

  // Reads run beside Kill (Rpc.fork): one that removes the record must leave them a typed
  // answer (NotRunning, InstanceNotFound), never a defect. Many rounds, many readers at once.
  it("answers reads racing a kill that removes the instance with typed errors, never a defect", async () => {
    cluster.printOnFailure()
    const outcomes = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const round = Effect.gen(function*() {
        const { id } = yield* host.start(cat)
        // Each reader asks again and again until it is refused, so some ask while the kill lands.
        const reader = <A, E>(read: Effect.Effect<A, E>): Effect.Effect<Exit.Exit<unknown, unknown>> =>
          Effect.exit(read).pipe(Effect.repeat({ while: Exit.isSuccess }))
        const reads = [
          ...Array.from({ length: 6 }, () => reader(instances.stats(id))),
          ...Array.from({ length: 6 }, () => reader(instances.sendEvent(id, "ping"))),
          ...Array.from({ length: 2 }, () => reader(instances.health(id))),
          ...Array.from({ length: 2 }, () => reader(instances.info(id)))
        ]
        const kill = Effect.sleep(Math.floor(Math.random() * 20)).pipe(Effect.andThen(Effect.exit(instances.kill(id, { removeImmediately: true }))))
        const exits = yield* Effect.all([kill, ...reads], { concurrency: "unbounded" })
        return exits.map((exit: Exit.Exit<unknown, unknown>) =>
          Exit.isSuccess(exit) ? "ok" : Cause.hasDies(exit.cause) ? `defect: ${Cause.pretty(exit.cause)}` : "typed"
        )
      })
      return (yield* Effect.forEach(Array.from({ length: 40 }), () => round, { concurrency: 1 })).flat()
    }))
    expect(outcomes.filter((outcome) => outcome.startsWith("defect"))).toEqual([])
    expect(outcomes).toContain("typed")
  })

  // Restart takes its turn in the mailbox; Kill overtakes it. A kill that removes the instance
  // while a restart waits for the old process to end must leave the restart a typed answer.
  it("lets a kill that removes the instance win over a restart it overtook: a typed answer, no process left", async () => {
    cluster.printOnFailure()
    const stubborn = (marker: string): InstanceSpec => ({
      program: {
        _tag: "Command",
        command: process.execPath,
        args: ["-e", "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)", marker]
      }
    })
    /** Processes of this machine whose command line carries `marker`. */
    const carrying = (marker: string) =>
      Fs.readdirSync("/proc").filter((pid) => /^\d+$/.test(pid)).filter((pid) => {
        try {
          return Fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker)
        } catch {
          return false
        }
      })
    const outcomes = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const round = Effect.gen(function*() {
        const marker = `marker-${Crypto.randomUUID()}`
        const { id } = yield* host.start(stubborn(marker))
        yield* instances.logs(id, { follow: true }).pipe(Stream.filter((line) => line.text === "ready"), Stream.take(1), Stream.runDrain)
        const restart = yield* Effect.forkChild(Effect.exit(instances.restart(id, { timeoutMs: 10_000 })))
        // The restart has asked the process to stop (it ignores SIGTERM) before the kill.
        yield* instances.info(id).pipe(
          Effect.repeat({ until: (info) => info.status === "stopping", schedule: Schedule.spaced("5 millis") }),
          Effect.timeout("10 seconds")
        )
        const killed = yield* Effect.exit(instances.kill(id, { removeImmediately: true }))
        const restarted: Exit.Exit<unknown, unknown> = yield* Fiber.join(restart)
        const gone = yield* Effect.exit(host.get(id))
        // No copy of the program is left running (a restart that went on would have started one).
        const left = yield* Effect.sync(() => carrying(marker)).pipe(
          Effect.repeat({ until: (pids) => pids.length === 0, schedule: Schedule.spaced("50 millis") }),
          Effect.timeoutOption("3 seconds")
        )
        return [
          ...[killed, restarted].map((exit: Exit.Exit<unknown, unknown>) =>
            Exit.isSuccess(exit) ? "ok" : Cause.hasDies(exit.cause) ? `defect: ${Cause.pretty(exit.cause)}` : "typed"
          ),
          Exit.isFailure(gone) ? "removed" : `still there: ${JSON.stringify(gone.value)}`,
          left._tag === "None" ? "a process left running" : "no process left"
        ]
      })
      return yield* Effect.forEach(Array.from({ length: 5 }), () => round, { concurrency: 1 })
    }))
    for (const outcome of outcomes) {
      expect(outcome[0]).toBe("ok")
      expect(outcome[1]).not.toMatch(/^defect/)
      expect(outcome.slice(2)).toEqual(["removed", "no process left"])
    }
  })
})
