/**
 * Fencing, tried as the chaos harness found the bug: a runner frozen (SIGSTOP) for longer than
 * its lock expiration. Another runner takes its shards and starts its instances; the frozen
 * runner's processes must not run meanwhile (its reaper stops them before the locks can
 * expire), and once it thaws, the copies of lost shards end without running again. Checked by
 * the instance's own heartbeats: the two copies' heartbeat ranges never overlap.
 */
import { Duration, Effect, Layer, Stream } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import * as Registry from "../../src/instance/Registry.ts"
import * as Fence from "../../src/liveness/Fence.ts"
import { ProcessManager } from "../../src/process/ProcessManager.ts"
import * as PM from "../support/processManager.ts"
import { useCluster } from "../support/cluster.ts"
import { eventually, processState } from "../support/processes.ts"


describe("fencing", () => {
  const cluster = useCluster("fencing", { runners: 2 })

  it("a runner frozen past its lock expiration runs no copy of an instance another runner took over", async () => {
    cluster.printOnFailure()
    const beats = Path.join(cluster.home, "beats")
    const script = `while :; do echo "$$ $(date +%s%3N)" >> '${beats}'; sleep 0.05; done`
    const started = await cluster.run(Effect.flatMap(HostClient, (host) =>
      host.start({ program: { _tag: "Command", command: "sh", args: ["-c", script], cwd: "/" } })))
    const owner = cluster.runners.find((runner) => runner.address === started.runner)!
    expect(owner).toBeDefined()
    const oldPid = started.pid!

    owner.child.kill("SIGSTOP")
    try {
      // The other runner runs it now.
      const moved = await eventually(async () => {
        const info = await cluster.run(Effect.flatMap(HostClient, (host) => host.get(started.id)))
        return info.status === "running" && info.runner !== owner.address && info.pid !== oldPid ? info : undefined
      }, { what: "the instance running on the other runner", timeoutMs: 60_000 })
      // The frozen runner's copy is stopped (T), not running beside it.
      expect(processState(oldPid)).toBe("T")
      expect(processState(moved.pid!)).not.toBe("T")
    } finally {
      owner.child.kill("SIGCONT")
    }
    // Thawed, the old runner learns it lost the shard and ends its copy without continuing it.
    await eventually(async () => processState(oldPid) === undefined || undefined, { what: "the old copy to end", timeoutMs: 60_000 })

    const lines = Fs.readFileSync(beats, "utf8").trim().split("\n").map((line) => line.split(" ").map(Number) as [number, number])
    const times = (pid: number) => lines.filter(([p]) => p === pid).map(([, t]) => t)
    const newPids = [...new Set(lines.map(([p]) => p))].filter((pid) => pid !== oldPid)
    expect(newPids.length).toBeGreaterThan(0)
    const oldLast = Math.max(...times(oldPid))
    const newFirst = Math.min(...newPids.flatMap(times))
    expect(oldLast).toBeLessThan(newFirst)
  }, 120_000)
})

describe("fencing, when the locks outlive the freeze", () => {
  // A long expiration: the fence stops the processes 9 s after the last refresh, the session
  // (and the locks) last 12 s. A 10 s freeze falls in between.
  const cluster = useCluster("fencing-thaw", {
    runners: 1,
    env: { SHARDHUB_SHARD_LOCK_EXPIRATION: "12 seconds", SHARDHUB_SHARD_LOCK_REFRESH: "1 second" }
  })

  it("stops the processes during the freeze, and continues them once the runner proves its locks again", async () => {
    cluster.printOnFailure()
    const started = await cluster.run(Effect.flatMap(HostClient, (host) =>
      host.start({ program: { _tag: "Command", command: "sleep", args: ["600"], cwd: "/" } })))
    const runner = cluster.runners[0]!
    runner.child.kill("SIGSTOP")
    try {
      await eventually(async () => processState(started.pid!) === "T" || undefined, { what: "the fence to stop the process", timeoutMs: 20_000 })
    } finally {
      runner.child.kill("SIGCONT")
    }
    await eventually(async () => processState(started.pid!) === "S" || undefined, { what: "the process to continue", timeoutMs: 20_000 })
    const info = await cluster.run(Effect.flatMap(HostClient, (host) => host.get(started.id)))
    expect(info).toMatchObject({ status: "running", pid: started.pid, restarts: 0 })
    await runner.waitFor(/fence: the shard locks were not proven in time/, 5000)
  }, 120_000)
})

describe("the fence on its own", () => {
  it("continues a stopped process only on refreshes that prove its shard, never one whose shard was lost meanwhile", async () => {
    const states = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const manager = yield* PM.manager()
      const fence = yield* Fence.Fence.pipe(Effect.provide(Fence.layer(Duration.millis(400)).pipe(Layer.provide(Layer.succeed(ProcessManager, manager)))))
      const handle = yield* manager.spawn({ command: "sleep", args: ["60"] })
      const pid = (yield* handle.info).pid!
      fence.guard("instance", handle.id, "default:1", () => true)
      const seen: Array<string | undefined> = []
      // Proven, then not renewed: stopped within the budget (300 ms).
      fence.refreshed(performance.now(), 1)
      yield* PM.until(() => processState(pid) === "T" && fence.stopped("instance"), "the fence stops the process")
      seen.push(processState(pid))
      // Probes prove nothing: however many, the process stays stopped, and the fence unrenewed.
      for (let i = 0; i < 4; i++) {
        fence.refreshed(performance.now(), 0)
        yield* Effect.sleep("50 millis")
      }
      seen.push(processState(pid))
      // Two refreshes of its shards: continued.
      fence.refreshed(performance.now(), 1)
      fence.refreshed(performance.now(), 1)
      yield* PM.until(() => processState(pid) === "S" && !fence.stopped("instance"), "the process continues")
      seen.push(processState(pid))
      // Frozen again, its shard found lost and then held again (acquired anew): not continued,
      // another runner may have run it meanwhile.
      yield* PM.until(() => processState(pid) === "T" && fence.stopped("instance"), "the fence stops the process again")
      fence.lost(["default:1"])
      for (let i = 0; i < 3; i++) fence.refreshed(performance.now(), 1)
      yield* Effect.sleep("100 millis")
      seen.push(processState(pid))
      expect(fence.stopped("instance")).toBe(true)
      yield* handle.kill
      return seen
    })))
    expect(states).toEqual(["T", "T", "S", "T"])
  })
})

describe("fencing tokens for programs", () => {
  const cluster = useCluster("epochs", { runners: 2 })

  it("gives each process its epoch (SHARDHUB_EPOCH), strictly greater after a takeover, and says whether it is still current", async () => {
    cluster.printOnFailure()
    // Asks on its message channel every 100 ms and prints "<SHARDHUB_EPOCH> <answered epoch> <current>".
    const script = "const net = require('net'); const channel = new net.Socket({ fd: 3, readable: true, writable: true }); " +
      "let rest = ''; channel.on('data', (chunk) => { rest += chunk; let i; while ((i = rest.indexOf('\\n')) >= 0) { " +
      "const m = JSON.parse(rest.slice(0, i)); rest = rest.slice(i + 1); " +
      "if (m.$shardhub === 'epoch') console.log(process.env.SHARDHUB_EPOCH, m.epoch, m.current) } }); " +
      "setInterval(() => channel.write(JSON.stringify({ $shardhub: 'epoch' }) + '\\n'), 100)"
    const lastAnswer = (id: string) =>
      Effect.flatMap(InstanceClient, (instances) =>
        Effect.map(Stream.runCollect(instances.logs(id, { streams: ["stdout"], tail: 1 })), (lines) => lines.at(-1)?.text))
    const answerUntil = (id: string, wanted: (answer: string | undefined) => boolean) =>
      Effect.gen(function*() {
        for (let i = 0; i < 200; i++) {
          const answer = yield* lastAnswer(id).pipe(Effect.orElseSucceed(() => undefined))
          if (wanted(answer)) return answer
          yield* Effect.sleep("100 millis")
        }
        return yield* Effect.die(new Error(`no wanted answer from ${id}`))
      })
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const started = yield* host.start({ program: { _tag: "Command", command: process.execPath, args: ["-e", script], cwd: "/" } })
      const first = yield* answerUntil(started.id, (answer) => answer !== undefined)
      // Another claim on record (as a takeover makes): the running process is told it is stale.
      const stale = yield* Effect.flatMap(Registry.Registry, (registry) => registry.claim(started.id, "127.0.0.1:1")).pipe(Effect.provide(Registry.layer))
      const told = yield* answerUntil(started.id, (answer) => answer?.endsWith("false") === true)
      return { started, first, stale, told }
    }))
    expect(result.started.epoch).toBe(1)
    expect(result.first).toBe("1 1 true")
    expect(result.stale.epoch).toBe(2)
    expect(result.told).toBe("1 1 false")

    // A real takeover: its runner dies; the copy on the other runner has a greater epoch, and is current.
    const victim = cluster.runners.find((runner) => runner.address === result.started.runner)!
    await victim.kill("SIGKILL")
    const moved = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const info = yield* Effect.gen(function*() {
        for (;;) {
          const info = yield* host.get(result.started.id)
          if (info.status === "running" && info.runner !== victim.address) return info
          yield* Effect.sleep("100 millis")
        }
      }).pipe(Effect.timeout("30 seconds"))
      const answer = yield* answerUntil(result.started.id, (answer) => answer?.startsWith(`${info.epoch} `) === true)
      yield* Effect.flatMap(InstanceClient, (c) => c.kill(result.started.id, { removeImmediately: true }))
      return { info, answer }
    }))
    expect(moved.info.epoch).toBeGreaterThan(2)
    expect(moved.answer).toBe(`${moved.info.epoch} ${moved.info.epoch} true`)
  }, 120_000)
})
