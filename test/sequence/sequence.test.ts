/**
 * Sequences end to end on two runner processes, with this test process as a client-only
 * participant: packages sent to the store, started on runners that never saw them, the whole
 * programming model (input/output per content type, stdin/stdout apart, args, appConfig,
 * events both ways, stop with and without keep-alive, kill handlers, health, logger), and
 * 50 MiB byte-exact through a pass-through sequence.
 */
import { Deferred, Effect, Fiber, Schedule, Stream } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Crypto from "node:crypto"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import { chunked, concat, sha256, textUntil } from "../support/bytes.ts"
import { useCluster } from "../support/cluster.ts"
import { spareProcesses } from "../support/processes.ts"
import { CONTROL_MISMATCH } from "../../src/instance/Incarnation.ts"
import * as Instance from "../../src/instance/Instance.ts"
import type { InstanceInfo } from "../../src/instance/InstanceSpec.ts"
import { fixture } from "./fixtures.ts"

const text = (s: string) => Stream.make(new TextEncoder().encode(s))
const languages = [
  { name: "node", features: "features", passthrough: "passthrough" },
  { name: "python", features: "features-py", passthrough: "passthrough-py" }
] as const
const decode = (chunks: ReadonlyArray<Uint8Array>) => concat(chunks).toString("utf8")
/** Fails with `what` when `effect` takes longer than `duration` (a hang names its step). */
const within = (duration: `${number} seconds`, what: () => string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutOrElse(effect, { duration, orElse: () => Effect.die(new Error(`no end within ${duration}: ${what()}`)) })
/** Polls an instance's record until `done` holds (at most `duration`). */
const awaitInfo = (id: string, done: (info: InstanceInfo) => boolean, duration: `${number} seconds`, what: string) =>
  Effect.flatMap(InstanceClient, (instances) =>
    instances.info(id).pipe(
      Effect.repeat({ until: done, schedule: Schedule.spaced("50 millis") }),
      within(duration, () => `${what} (${id})`)
    ))
const isOver = (info: InstanceInfo) => info.status !== "running"
/** Where a process stands, for a step that hangs: its state and what it waits in. */
const whereIs = (pid: number | undefined) => {
  if (pid === undefined) return "no pid"
  const read = (file: string) => {
    try {
      return Fs.readFileSync(`/proc/${pid}/${file}`, "utf8").trim()
    } catch {
      return "gone"
    }
  }
  const state = read("status").split("\n").find((line) => line.startsWith("State:")) ?? "State: gone"
  return `pid ${pid} ${state}, waiting in ${read("wchan") || "-"}`
}

describe("sequences on two runners", () => {
  const cluster = useCluster("sequences", { runners: 2 })

  it("stores packages, lists them, refuses a bad main, and deletes them (not while running unless forced)", async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture("features"))
      const listed = yield* host.listSequences
      const badMain = yield* Effect.flip(host.sendSequence(fixture("badmain")))
      const running = yield* host.startSequence(seq.id)
      const inUse = yield* Effect.flip(host.deleteSequence(seq.id))
      yield* instances.kill(running.id)
      yield* host.deleteSequence(seq.id)
      const gone = yield* Effect.flip(host.getSequence(seq.id))
      const unknown = yield* Effect.flip(host.startSequence("no-such-sequence"))
      return { seq, listed, badMain, inUse, gone, unknown }
    }))
    expect(result.seq).toMatchObject({ name: "features", version: "0.1.0", engine: "node", main: "lib/main.js", args: ["default-arg"] })
    expect(result.listed.map((s) => s.id)).toContain(result.seq.id)
    expect(result.badMain).toMatchObject({ _tag: "PackageError", reason: "InvalidMain" })
    expect(result.badMain.message).toMatch(/Sequence entrypoint path "app.js" is invalid.*Check `main` field/)
    expect(result.inUse).toMatchObject({ _tag: "SequenceInUse" })
    expect(result.gone).toMatchObject({ _tag: "SequenceNotFound" })
    expect(result.unknown).toMatchObject({ _tag: "SequenceNotFound" })
  })

  for (const language of languages) {
  it(`${language.name}: runs the programming model: content types, stdio apart, args, config, events, health, logger`, async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture(language.features))
      const start = (args?: ReadonlyArray<unknown>) =>
        host.startSequence(seq.id, { ...(args === undefined ? {} : { args }), appConfig: { colour: "green" } })
      // Objects (NDJSON) in → objects out.
      const a = yield* start(["x", 2])
      const objects = yield* instances.inout(a.id, text('{"n":1}\n{"n":2}\nnot json\n{"n":3}\n'), { contentType: "application/x-ndjson" })
        .pipe(Stream.runCollect)
      // Text in → text out; stdin → stdout apart from it.
      const b = yield* start()
      const texts = yield* instances.inout(b.id, text("hello\nsequences\n"), { contentType: "text/plain" }).pipe(Stream.runCollect)
      // Bytes in → bytes out.
      const c = yield* start()
      const bytes = yield* instances.inout(c.id, Stream.make(new Uint8Array([1, 2, 3, 250])), { contentType: "application/octet-stream" })
        .pipe(Stream.runCollect)
      // Events both ways, health, stdin/stdout, logger, on a live one.
      const d = yield* start(["live"])
      // Listeners are registered before the sequence reports ready (the start answers after).
      yield* instances.sendEvent(d.id, "ping", { hello: 1 })
      const pongEvent = yield* instances.lastEvent(d.id, "pong")
      const healthyBefore = yield* instances.health(d.id)
      yield* instances.sendEvent(d.id, "sick")
      const healthAfter = yield* Effect.gen(function*() {
        while (true) {
          const health = yield* instances.health(d.id)
          if (!health.healthy) return health
          yield* Effect.sleep("100 millis")
        }
      })
      yield* instances.input(d.id, text("shout\n"), { stream: "stdin", end: false })
      const stdout = yield* instances.output(d.id, "stdout").pipe(Stream.decodeText(), Stream.takeUntil((s) => s.includes("SHOUT")), Stream.mkString)
      const logs = yield* instances.logs(d.id, { streams: ["log"] }).pipe(Stream.runCollect)
      yield* instances.kill(d.id)
      return { objects, texts, bytes, pongEvent, healthyBefore, healthAfter, stdout, logs, ids: [a.id, b.id, c.id] }
    }))
    expect(decode(result.objects).trim().split("\n").map((line) => JSON.parse(line))).toEqual([
      { n: 1, seen: true },
      { n: 2, seen: true },
      { n: 3, seen: true }
    ])
    expect(decode(result.texts)).toBe("HELLO\nSEQUENCES\n")
    expect([...concat(result.bytes)]).toEqual([250, 3, 2, 1])
    expect(result.pongEvent.data).toEqual({ data: { hello: 1 }, args: ["live"], config: { colour: "green" } })
    expect(result.healthyBefore.healthy).toBe(true)
    expect(result.healthAfter.healthy).toBe(false)
    expect(result.stdout).toContain("SHOUT")
    expect(result.logs.map((line) => line.text)).toContain('info started with ["live"]')
  })

  it(`${language.name}: stops through the stop handlers, honours keep-alive when allowed, and runs kill handlers`, async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture(language.features))
      // Without keep-alive: the handlers run, then the instance ends as stopped (STH's 138).
      const a = yield* host.startSequence(seq.id, { args: ["plain"] })
      const stopped = yield* instances.stop(a.id, { timeoutMs: 5000 })
      const stdout = yield* instances.output(a.id, "stdout").pipe(Stream.decodeText(), Stream.mkString)
      // With keep-alive allowed, a sequence that asks for it keeps running, stop after stop.
      const b = yield* host.startSequence(seq.id, { args: ["keepalive"] })
      const kept1 = yield* instances.stop(b.id, { timeoutMs: 5000, canCallKeepalive: true })
      const kept2 = yield* instances.stop(b.id, { timeoutMs: 5000, canCallKeepalive: true })
      const health = yield* instances.health(b.id)
      const final = yield* instances.stop(b.id, { timeoutMs: 5000, canCallKeepalive: false })
      const lastStopping = yield* instances.lastEvent(b.id, "stopping")
      // Kill: the kill handlers run first.
      const c = yield* host.startSequence(seq.id)
      const names: Array<string> = []
      const subscribed = yield* Deferred.make<void>()
      const events = yield* instances.events(c.id).pipe(
        Stream.runForEach((event) => Effect.andThen(Effect.sync(() => names.push(event.name)), Deferred.succeed(subscribed, undefined))),
        Effect.forkChild
      )
      // The stream is live once a pong came through it (a ping may reach the instance before
      // the stream's subscription does: ping until one comes through).
      yield* instances.sendEvent(c.id, "ping").pipe(
        Effect.andThen(Deferred.await(subscribed).pipe(Effect.timeout("200 millis"))),
        Effect.retry({ times: 50 })
      )
      const killed = yield* instances.kill(c.id)
      yield* Fiber.join(events)
      return { stopped, stdout, kept1, kept2, health, final, lastStopping, killed, names }
    }))
    expect(result.stopped).toMatchObject({ status: "stopped", exitCode: 138, desired: "stopped" })
    expect(result.stdout).toBe("Cleaning up...\nCleanup done.\n")
    expect(result.kept1).toMatchObject({ status: "running", desired: "running" })
    expect(result.kept2).toMatchObject({ status: "running", desired: "running", pid: result.kept1.pid })
    expect(result.health.healthy).toBe(true)
    expect(result.final).toMatchObject({ status: "stopped", exitCode: 138 })
    expect(result.lastStopping.data).toEqual({ timeout: 5000, canCallKeepalive: false })
    expect(result.killed).toMatchObject({ status: "stopped", exitCode: 137 })
    expect(result.names.filter((name) => name !== "pong")).toEqual(["killed"])
  })

  it(`${language.name}: passes 8 MiB of random bytes through a pass-through sequence byte-exact`, async () => {
    cluster.printOnFailure()
    const data = Crypto.randomBytes(8 * 1024 * 1024)
    const out = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture(language.passthrough))
      const { id } = yield* host.startSequence(seq.id)
      return yield* instances.inout(id, Stream.make(data.subarray(0, 1000), data.subarray(1000))).pipe(Stream.runCollect)
    }))
    const received = concat(out)
    expect(received.length).toBe(data.length)
    expect(received.equals(data)).toBe(true)
  })
  }

  it("passes random byte streams through many concurrent pass-through instances byte-exact, each completing", async () => {
    cluster.printOnFailure()
    const rounds = 6
    const concurrent = 4
    const results = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture("passthrough"))
      const one = Effect.gen(function*() {
        const data = Crypto.randomBytes(Math.floor(Math.random() * 4 * 1024 * 1024))
        const chunk = 1 + Math.floor(Math.random() * 256 * 1024)
        const { id } = yield* host.startSequence(seq.id)
        const out = yield* instances.inout(id, chunked(data, chunk)).pipe(
          Stream.runCollect,
          within("30 seconds", () => `${data.length} bytes in chunks of ${chunk} through ${id}`)
        )
        const ended = yield* awaitInfo(id, isOver, "10 seconds", "the end after the input ended")
        return { exact: concat(out).equals(data), status: ended.status, exitCode: ended.exitCode }
      })
      return yield* Effect.forEach(
        Array.from({ length: rounds }),
        () => Effect.forEach(Array.from({ length: concurrent }), () => one, { concurrency: concurrent }),
        { concurrency: 1 }
      )
    }))
    expect(results.flat()).toEqual(Array.from({ length: rounds * concurrent }, () => ({ exact: true, status: "stopped", exitCode: 0 })))
  })

  it("lets Node sequences take direct inout connections themselves: random byte streams byte-exact, concurrently, each completing (Python relayed)", async () => {
    cluster.printOnFailure()
    const results = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seqs = { node: yield* host.sendSequence(fixture("passthrough")), python: yield* host.sendSequence(fixture("passthrough-py")) }
      const one = (language: keyof typeof seqs, round: number) =>
        Effect.gen(function*() {
          const data = Crypto.randomBytes(Math.floor(Math.random() * 4 * 1024 * 1024))
          const chunk = 1 + Math.floor(Math.random() * 256 * 1024)
          const { id } = yield* host.startSequence(seqs[language].id)
          const out = yield* instances.inout(id, chunked(data, chunk), { direct: true, ...(round % 2 === 0 ? { contentType: "application/octet-stream" } : {}) }).pipe(
            Stream.runCollect,
            within("30 seconds", () => `${data.length} bytes in chunks of ${chunk} through ${language} ${id}`)
          )
          const ended = yield* awaitInfo(id, isOver, "10 seconds", "the end after the input ended")
          return { exact: concat(out).equals(data), status: ended.status, exitCode: ended.exitCode }
        })
      return yield* Effect.forEach(
        Array.from({ length: 6 }),
        (_, round) => Effect.forEach(["node", "node", "node", "python"] as const, (language) => one(language, round), { concurrency: 4 }),
        { concurrency: 1 }
      )
    }))
    expect(results.flat()).toEqual(Array.from({ length: 24 }, () => ({ exact: true, status: "stopped", exitCode: 0 })))
  })

  it("keeps a direct inout's bytes past the runner, then gives input and output back to it once the connection closed", async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture("passthrough"))
      const { id } = yield* host.startSequence(seq.id)
      // The input stays open (end: false); the client closes the connection once its output came back.
      const direct = yield* instances.inout(id, text("direct,"), { direct: true, end: false, contentType: "text/plain" }).pipe(
        Stream.decodeText(),
        Stream.takeUntil((s) => s.includes("direct,")),
        Stream.mkString,
        within("20 seconds", () => `the direct output of ${id}`)
      )
      // The runner never saw those bytes: a reader with replay gets only output of input relayed
      // by the runner again (into the same input, no new header) — once the process noticed the
      // closed connection, which it does when a write to it fails: until then output is lost
      // with it, as no replay was asked.
      const later = yield* Effect.forkChild(instances.output(id).pipe(
        Stream.decodeText(),
        Stream.takeUntil((s) => s.includes("relayed,")),
        Stream.mkString
      ))
      yield* instances.input(id, text("relayed,"), { end: false }).pipe(
        Effect.repeat({ until: () => later.pollUnsafe() !== undefined, schedule: Schedule.spaced("50 millis") }),
        within("20 seconds", () => `relayed input of ${id}`),
        Effect.forkChild
      )
      const relayed = yield* Fiber.join(later).pipe(within("20 seconds", () => `the relayed output of ${id}`))
      yield* instances.kill(id)
      return { direct, relayed }
    }))
    expect(result.direct).toBe("direct,")
    expect(result.relayed).toMatch(/^(relayed,)+$/)
  })

  it("a process's own port opens only for its announced ticket, once; junk, silence and guesses get nothing and block no one", async () => {
    cluster.printOnFailure()
    const { ticket, pid, id } = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture("passthrough"))
      const { id } = yield* host.startSequence(seq.id)
      const { pid } = yield* instances.info(id)
      const ticket = yield* (yield* Instance.Instance.client)(id).Open({ stream: "inout", direct: true, contentType: "text/plain" })
      return { ticket, pid: pid!, id }
    }))
    expect(ticket).toMatchObject({ host: "127.0.0.1", direct: true })
    // The port is the sequence's own listener: a socket of its process (bound for it by the spawner).
    const inode = Fs.readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1).map((line) => line.trim().split(/\s+/))
      .find((f) => f[3] === "0A" && parseInt(f[1]!.split(":")[1]!, 16) === ticket.port)?.[9]
    const sockets = Fs.readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return Fs.readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { return "" } })
    expect(sockets).toContain(`socket:[${inode}]`)
    /** Dials the process's port, writes `send` (then ends, unless `end` is false), and collects what comes back until it closes. */
    const dial = (send: string, end = true) =>
      new Promise<string>((resolve) => {
        const socket = Net.connect({ host: ticket.host, port: ticket.port })
        let received = ""
        socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")))
        socket.on("error", () => {})
        socket.on("close", () => resolve(received))
        socket.write(send)
        if (end) socket.end()
      })
    const silent = Net.connect({ host: ticket.host, port: ticket.port })
    silent.on("error", () => {})
    const [guess, junk, unended] = await Promise.all([
      dial(`${Crypto.randomBytes(16).toString("hex")}\n`),
      dial("x".repeat(200)),
      dial("nonsense\n", false)
    ])
    // The owner's client, with the ticket, while a connection that sends nothing is still open;
    // the same ticket again while it is open.
    const ownerSocket = Net.connect({ host: ticket.host, port: ticket.port })
    let owner = ""
    const echoed = new Promise<void>((resolve) =>
      ownerSocket.on("data", (chunk: Buffer) => {
        owner += chunk.toString("latin1")
        if (owner.endsWith("itself")) resolve()
      }))
    const closed = new Promise((resolve) => ownerSocket.on("close", resolve))
    ownerSocket.write(`${ticket.ticket}\nthrough the process itself`)
    await echoed
    const again = await dial(`${ticket.ticket}\n`)
    ownerSocket.end()
    await closed
    silent.destroy()
    const ended = await cluster.run(awaitInfo(id, isOver, "10 seconds", "the end after its input ended"))
    expect({ guess, junk, unended, owner, again }).toEqual({
      guess: "ERR unknown or expired ticket\n",
      junk: "ERR unknown or expired ticket\n",
      unended: "ERR unknown or expired ticket\n",
      owner: "OK\nthrough the process itself",
      again: "ERR unknown or expired ticket\n"
    })
    expect({ status: ended.status, exitCode: ended.exitCode }).toEqual({ status: "stopped", exitCode: 0 })
  })

  it("gives the input its header when a direct ticket is never used and the input comes through the runner after all", async () => {
    cluster.printOnFailure()
    const out = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture("passthrough"))
      const { id } = yield* host.startSequence(seq.id)
      const ticket = yield* (yield* Instance.Instance.client)(id).Open({ stream: "input", contentType: "text/plain" })
      expect(ticket.direct).toBe(true)
      // The client that asked never dials; another sends through the runner.
      return yield* instances.inout(id, text("relayed after all"), { direct: false }).pipe(
        Stream.decodeText(),
        Stream.mkString,
        within("20 seconds", () => `the relayed output of ${id}`)
      )
    }))
    expect(out).toBe("relayed after all")
  })

  it("starts a Node sequence in a spare started ahead, as the same process a spawn would have been", async () => {
    cluster.printOnFailure()
    const seen = new Map<number, number>()
    /**
     * The spares of each of this file's runners (children of its spawners) that have been up a
     * while: its runner has them (the spawner hands over a spare's pipes in a few ms).
     */
    const spares = () => {
      const now = performance.now()
      const byRunner = new Map<string, Array<number>>(cluster.runners.map((runner) => [runner.address, []]))
      const addressOf = new Map(cluster.runners.map((runner) => [runner.pid, runner.address]))
      for (const { pid, manager } of spareProcesses()) {
        const runner = addressOf.get(manager)
        if (runner === undefined) continue
        if (!seen.has(pid)) seen.set(pid, now)
        if (now - seen.get(pid)! > 100) byRunner.get(runner)!.push(pid)
      }
      return byRunner
    }
    type Said = { readonly cwd: string; readonly argv: ReadonlyArray<string>; readonly env: Record<string, string> }
    const spec = { args: ["a", 1], appConfig: { colour: "blue" }, env: { set: { WHO_AM_I: "tested" } } }
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture("whoami"))
      const said = (id: string) =>
        instances.output(id).pipe(Stream.decodeText(), Stream.mkString, Effect.map((text) => JSON.parse(text) as Said), within("20 seconds", () => `the output of ${id}`))
      const runs: Array<{ readonly id: string; readonly expected: boolean; readonly spare: boolean; readonly said: Said }> = []
      const ranOn = new Set<string>()
      for (let i = 0; i < 8; i++) {
        // A runner's first start of a Node sequence leaves a spare starting, and so does each
        // start after: every runner that ran one has its spare up before the next start.
        const up = yield* Effect.sync(spares).pipe(
          Effect.repeat({ until: (found) => [...ranOn].every((runner) => found.get(runner)!.length > 0), schedule: Schedule.spaced("20 millis") }),
          within("20 seconds", () => `a spare on each of ${[...ranOn].join(", ")}`)
        )
        const { id, pid, runner } = yield* host.startSequence(seq.id, spec)
        ranOn.add(runner!)
        const waiting = up.get(runner!) ?? []
        runs.push({ id, expected: waiting.length > 0, spare: pid !== undefined && waiting.includes(pid), said: yield* said(id) })
      }
      // A process with rlimits starts through prlimit, never in a spare: what a spawn gives.
      const spawned = yield* host.startSequence(seq.id, { ...spec, limits: { nofile: 4096 } })
      return { runs, reference: { id: spawned.id, said: yield* said(spawned.id) } }
    }))
    const { runs, reference } = result
    // Each start on a runner with a spare up was served by it (the first on a runner that never
    // ran a Node sequence before has none) …
    expect(runs.map((run) => run.spare)).toEqual(runs.map((run) => run.expected))
    expect(runs.filter((run) => run.spare).length).toBeGreaterThanOrEqual(6)
    // … and the spare became what a new process would have been.
    for (const { id, said } of [...runs, reference]) {
      expect(said).toMatchObject({ argv: [expect.stringMatching(/\/sequences\/[0-9a-f]{64}$/), "index.js"], args: ["a", 1], config: { colour: "blue" }, instanceId: id })
      expect(said.cwd).toBe(said.argv[0])
      expect(said.env).toMatchObject({ WHO_AM_I: "tested", SHARDHUB_INSTANCE_ID: id })
      expect(said.env["SHARDHUB_SEQUENCE_ARGS"]).toBeUndefined()
    }
    const keys = (env: Record<string, string>) => Object.keys(env).sort()
    for (const run of runs) expect(keys(run.said.env)).toEqual(keys(reference.said.env))
  })

  it("gives each process of a sequence restarted by its restart policy its own input header", async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture("passthrough"))
      const { id } = yield* host.startSequence(seq.id, { restart: { mode: "always", backoffMs: 0 } })
      const restarted = (restarts: number) =>
        awaitInfo(id, (info) => info.restarts === restarts && info.status === "running", "20 seconds", `restart ${restarts}`)
      // Each input ends its process (the output ends with the input), which is started again.
      yield* instances.input(id, text("one,"), { contentType: "text/plain" })
      const second = yield* restarted(1)
      yield* instances.input(id, text("two"), { contentType: "text/plain" })
      yield* restarted(2)
      // The output spans the processes: what each one wrote, in order.
      const output = yield* textUntil(instances.output(id), "one,two".length).pipe(
        within("10 seconds", () => `the output of both processes of ${id}`)
      )
      yield* instances.kill(id)
      return { output, second }
    }))
    expect(result.output).toBe("one,two")
    expect(result.second).toMatchObject({ status: "running", restarts: 1 })
  })

  it("runs an STH Node pipeline unchanged: a scramjet StringStream input, each stage's result a DataStream", async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture("sth-node"))
      const { id } = yield* host.startSequence(seq.id, { args: [3] })
      const output = yield* instances.inout(id, Stream.make(...["a\nb", "\nc\nd\n", "e\n"].map((part) => new TextEncoder().encode(part))), {
        contentType: "text/plain"
      }).pipe(Stream.runCollect, within("20 seconds", () => `the output of ${id}`))
      return { output: decode(output), info: yield* awaitInfo(id, isOver, "10 seconds", "the end") }
    }))
    expect(result.output).toBe("A,B,C\nD,E\n")
    expect(result.info).toMatchObject({ status: "stopped", exitCode: 0 })
  })

  it("runs an STH Python sequence unchanged: a scramjet Stream input, awaited emit and keep_alive, stop timeouts in seconds, a health check", async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture("sth-py"))
      const { id } = yield* host.startSequence(seq.id, { appConfig: { k: 1 } })
      // Lines cut across chunks, and a character cut across them too.
      const output = instances.output(id)
      yield* instances.input(id, text("hel"), { contentType: "text/plain", end: false })
      yield* instances.input(id, Stream.make(new Uint8Array([0x6c, 0x6f, 0x0a, 0xc3])), { contentType: "text/plain", end: false })
      yield* instances.input(id, Stream.make(Buffer.concat([Buffer.from([0xa9]), Buffer.from(" \u00e9t\u00e9\nlast\n")])), { contentType: "text/plain", end: false })
      const upper = yield* textUntil(output, "HELLO\n\u00c9 \u00c9T\u00c9\nLAST\n".length).pipe(within("20 seconds", () => `the output of ${id}`))
      yield* instances.sendEvent(id, "ping", "x")
      const pong = yield* instances.lastEvent(id, "pong")
      const health = yield* awaitInfo(id, () => true, "5 seconds", "info").pipe(Effect.andThen(
        instances.health(id).pipe(Effect.repeat({ until: (h) => h.healthy, schedule: Schedule.spaced("100 millis") }))
      ))
      // A stop that allows a keep-alive: the handler gets seconds, keeps it alive; then a plain stop ends it.
      const kept = yield* instances.stop(id, { timeoutMs: 4000, canCallKeepalive: true })
      const stopEvent = yield* instances.lastEvent(id, "stopping")
      const stopped = yield* instances.stop(id, { timeoutMs: 4000 })
      const batch = yield* host.startSequence(seq.id, { args: ["batch"] })
      const batched = yield* instances.inout(batch.id, text("a\nb!\nc\nd\ne!\nf\n"), { contentType: "text/plain" }).pipe(Stream.runCollect)
      return { upper, pong, health, kept, stopEvent, stopped, batched: decode(batched) }
    }))
    expect(result.upper).toBe("HELLO\n\u00c9 \u00c9T\u00c9\nLAST\n")
    expect(result.pong.data).toEqual({ got: "x", config: { k: 1 } })
    expect(result.health).toMatchObject({ healthy: true })
    expect(result.stopEvent.data).toEqual({ timeout: 4, canKeepAlive: true })
    expect(result.kept.status).toBe("running")
    expect(result.stopped).toMatchObject({ status: "stopped", exitCode: 138 })
    expect(result.batched).toBe("a b!\nc d e!\nf\n")
  })

  it("runs a sequence on runners that never saw it, and passes 50 MiB through it byte-exact", async () => {
    cluster.printOnFailure()
    const data = Crypto.randomBytes(50 * 1024 * 1024)
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture("passthrough"))
      // One instance on each runner (an instance lands on its id's shard); one that lands on a
      // runner already covered is killed at once.
      const placed = new Map<string, InstanceInfo>()
      yield* Effect.gen(function*() {
        for (let attempt = 0; placed.size < 2 && attempt < 64; attempt++) {
          const info = yield* host.startSequence(seq.id)
          if (placed.has(info.runner!)) yield* instances.kill(info.id)
          else placed.set(info.runner!, info)
        }
      }).pipe(within("60 seconds", () => `an instance on each runner (placed: ${JSON.stringify([...placed.keys()])})`))
      const [first, ...others] = placed.values()
      const out = yield* instances.inout(first!.id, chunked(data)).pipe(
        Stream.runCollect,
        within("40 seconds", () => `50 MiB through ${first!.id} (${whereIs(first!.pid)})`)
      )
      const ended = yield* awaitInfo(first!.id, isOver, "10 seconds", "the end after the input ended")
      yield* Effect.forEach(others, (info) => instances.kill(info.id), { concurrency: 8 })
      return { seq, runners: placed.size, out: concat(out), ended }
    }))
    expect(result.runners).toBe(2)
    for (const runner of ["runner-0", "runner-1"]) {
      expect(Fs.existsSync(Path.join(cluster.home, runner, "sequences", result.seq.hash, "index.js"))).toBe(true)
    }
    expect(result.out.length).toBe(data.length)
    expect(sha256(result.out)).toBe(sha256(data))
    // The output ended with the input: the instance completed (exit 0).
    expect(result.ended).toMatchObject({ status: "stopped", exitCode: 0 })
  })

  // Runs last: what every test above made the in-child runners (node and python) send.
  it("every control message the in-child runners sent followed the protocol (src/process/Control.ts)", () => {
    for (const runner of cluster.runners) expect(runner.output()).not.toContain(CONTROL_MISMATCH)
  })
})
