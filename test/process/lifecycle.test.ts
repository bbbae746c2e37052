/**
 * ProcessManager lifecycle, with real processes: exit statuses, graceful and forced stops of
 * whole process trees, the race contract of terminate/kill/wait, readiness, restart policy,
 * memory limits, and clear errors for bad specs.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Stream } from "effect"
import type { Terminal } from "../../src/process/ProcessStatus.ts"
import { child, isRunning, manager, tempDir, until } from "../support/processManager.ts"

const firstLine = (stream: Stream.Stream<Uint8Array>) =>
  stream.pipe(Stream.decodeText(), Stream.splitLines, Stream.runHead, Effect.map(Option.getOrThrow))

describe("ProcessManager lifecycle", () => {
  it.live("reports the exit code with a crash log, and the signal that killed a process", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const failing = yield* pm.spawn(child("exit", "7"))
      const status = yield* failing.wait
      expect(status).toMatchObject({ _tag: "Exited", code: 7 })
      expect(status.crashLog).toContain("exiting with 7")
      expect((yield* failing.info).status).toEqual(status)

      const clean = yield* pm.spawn({ command: "true" })
      expect(yield* clean.wait).toEqual({ _tag: "Exited", code: 0, crashLog: [] })

      const sleeper = yield* pm.spawn({ command: "sleep", args: ["100"] })
      expect(yield* sleeper.kill).toMatchObject({ _tag: "Killed", signal: "SIGKILL" })
      expect(isRunning((yield* sleeper.info).pid!)).toBe(false)
    }))

  it.live("terminate asks with SIGTERM, and a child that ignores it is SIGKILLed at the deadline", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const polite = yield* pm.spawn({ command: "sleep", args: ["100"] })
      expect(yield* polite.terminate("5 seconds")).toMatchObject({ _tag: "Killed", signal: "SIGTERM" })

      const stubborn = yield* pm.spawn(child("ignore-term"))
      expect(yield* firstLine(stubborn.stdout())).toBe("READY")
      const started = Date.now()
      const status = yield* stubborn.terminate("300 millis")
      expect(status).toMatchObject({ _tag: "Killed", signal: "SIGKILL" })
      expect(Date.now() - started).toBeGreaterThanOrEqual(290)
    }))

  it.live("an in-band stop message ends a child that speaks the channel", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const echo = yield* pm.spawn({ ...child("echo", "--ready"), messages: "ndjson", stopWith: "message", readiness: { _tag: "Message", timeoutMs: 10_000 } })
      yield* echo.ready
      expect(yield* echo.terminate("10 seconds")).toEqual({ _tag: "Exited", code: 0, crashLog: [] })
    }))

  it.live("concurrent terminate, kill and wait callers coalesce on one observed terminal status", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      for (let iteration = 0; iteration < 20; iteration++) {
        // Odd iterations ignore SIGTERM in the whole tree, so terminate has to escalate.
        const handle = yield* pm.spawn(
          iteration % 2 === 0
            ? { command: "sleep", args: ["100"] }
            : { command: "sh", args: ["-c", "trap '' TERM; echo READY; while :; do sleep 1; done"] }
        )
        if (iteration % 2 === 1) expect(yield* firstLine(handle.stdout())).toBe("READY")
        const callers = Array.from({ length: 100 }, (_, caller): Effect.Effect<Terminal, unknown> => {
          switch ((caller * 7 + iteration) % 4) {
            case 0:
              return handle.kill
            case 1:
              return handle.wait
            default:
              return handle.terminate(`${(caller % 5) * 40} millis`)
          }
        })
        const results = yield* Effect.all(callers, { concurrency: "unbounded" })
        const info = yield* handle.info
        expect(info.status._tag === "Killed" || info.status._tag === "Exited").toBe(true)
        for (const result of results) expect(result).toEqual(info.status)
        expect(yield* handle.terminate("1 second")).toEqual(info.status)
        expect(yield* handle.kill).toEqual(info.status)
        expect(isRunning(info.pid!)).toBe(false)
      }
    }))

  it.live("terminate and kill reach grandchildren, and a run's leftovers die with its main process", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      for (const stop of ["terminate", "kill"] as const) {
        const tree = yield* pm.spawn(child("tree", "3"))
        const { pids } = JSON.parse(yield* firstLine(tree.stdout())) as { pids: Array<number> }
        expect(pids).toHaveLength(4)
        expect(pids.every(isRunning)).toBe(true)
        yield* stop === "kill" ? tree.kill : tree.terminate("2 seconds")
        yield* until(() => !pids.some(isRunning), "the tree is gone")
      }

      // `sh` exits at once, leaving `sleep` in the background holding the output pipe.
      const leaver = yield* pm.spawn({ command: "sh", args: ["-c", "sleep 1000 & echo $!"] })
      const background = Number(yield* firstLine(leaver.stdout()))
      expect(yield* leaver.wait).toMatchObject({ _tag: "Exited", code: 0 })
      yield* until(() => !isRunning(background), "the background process is gone")
    }))

  it.live("ready and wait serve many waiters; a child that never reports ready fails with ReadyTimeout", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const ready = yield* pm.spawn({ ...child("echo", "--ready"), messages: "ndjson", readiness: { _tag: "Message", timeoutMs: 10_000 } })
      yield* Effect.all(Array.from({ length: 50 }, () => ready.ready), { concurrency: "unbounded" })
      expect((yield* ready.info).status._tag).toBe("Ready")
      yield* ready.kill
      expect(Exit.isSuccess(yield* Effect.exit(ready.ready))).toBe(true)

      const silent = yield* pm.spawn({ ...child("echo"), messages: "ndjson", readiness: { _tag: "Message", timeoutMs: 300 } })
      const waiters = yield* Effect.all(Array.from({ length: 20 }, () => Effect.flip(silent.ready)), { concurrency: "unbounded" })
      for (const error of waiters) {
        expect(error._tag).toBe("NotReady")
        expect(error.status).toMatchObject({ _tag: "Failed", reason: "ReadyTimeout", signal: "SIGKILL" })
      }
      expect(yield* silent.wait).toEqual(waiters[0]!.status)
    }))

  // A restart whose spawn fails (here: its working directory was removed) is an ordinary outcome:
  // backoff and retry under the policy, and stop/wait always answer, saying why.
  it.live("a restart whose spawn fails backs off and retries under the policy; terminate answers, saying why", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const cwd = Fs.mkdtempSync(Path.join(yield* tempDir(), "cwd-"))
      const doomed = yield* pm.spawn({
        command: "sh",
        args: ["-c", "exit 1"],
        cwd,
        restart: { mode: "always", maxRestarts: 1000, backoffMs: 20, backoffFactor: 1 }
      })
      Fs.rmSync(cwd, { recursive: true })
      // Not wedged in Starting: the failed spawns keep counting as restarts.
      let info = yield* doomed.info
      yield* until(() => {
        info = Effect.runSync(doomed.info)
        return info.restarts >= 3
      }, "three restarts with a missing working directory")
      const status = yield* doomed.terminate("1 second").pipe(Effect.timeout("5 seconds"))
      expect(status).toMatchObject({ _tag: "Failed", reason: "SpawnFailed" })
      expect(status._tag === "Failed" && status.message).toMatch(/working directory .* does not exist/)
      expect(yield* doomed.wait).toEqual(status)

      // With a limit, the retries end on their own in RestartLimitReached.
      const limited = Fs.mkdtempSync(Path.join(yield* tempDir(), "cwd-"))
      const bounded = yield* pm.spawn({
        command: "sh",
        args: ["-c", "exit 1"],
        cwd: limited,
        restart: { mode: "always", maxRestarts: 3, backoffMs: 20, backoffFactor: 1 }
      })
      Fs.rmSync(limited, { recursive: true })
      const end = yield* bounded.wait.pipe(Effect.timeout("10 seconds"))
      expect(end).toMatchObject({ _tag: "Failed", reason: "RestartLimitReached" })
      expect(end._tag === "Failed" && end.message).toMatch(/working directory .* does not exist/)
    }))

  it.live("restart policy: on-failure restarts with growing backoff up to the limit; never and clean exits do not", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const started = Date.now()
      const flaky = yield* pm.spawn({
        ...child("exit", "3"),
        restart: { mode: "on-failure", maxRestarts: 3, backoffMs: 50, backoffFactor: 2, minUptimeMs: 60_000 }
      })
      const status = yield* flaky.wait
      expect(status).toMatchObject({ _tag: "Failed", reason: "RestartLimitReached", code: 3 })
      expect((yield* flaky.info).restarts).toBe(3)
      // Three waits of 50, 100 and 200 ms lie between the four runs.
      expect(Date.now() - started).toBeGreaterThanOrEqual(350)
      const lines = yield* Stream.runCollect(flaky.logs({ streams: ["stderr"] }))
      expect(lines.map((line) => line.text)).toEqual(Array(4).fill("exiting with 3"))

      const clean = yield* pm.spawn({ command: "true", restart: { mode: "on-failure" } })
      expect(yield* clean.wait).toMatchObject({ _tag: "Exited", code: 0 })
      expect((yield* clean.info).restarts).toBe(0)

      const once = yield* pm.spawn({ ...child("exit", "1"), restart: { mode: "never" } })
      expect(yield* once.wait).toMatchObject({ _tag: "Exited", code: 1 })
      expect((yield* once.info).restarts).toBe(0)

      // `always` restarts even clean exits; a terminate during the backoff ends it with the last status.
      const looping = yield* pm.spawn({ command: "true", restart: { mode: "always", backoffMs: 60_000 } })
      yield* until(() => Effect.runSync(looping.info).status._tag === "Backoff", "the first restart is pending")
      expect(yield* looping.terminate("1 second")).toEqual({ _tag: "Exited", code: 0, crashLog: [] })
    }))

  it.live("a process tree over its memory limit is killed with MemoryLimitExceeded", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const hog = yield* pm.spawn({ ...child("hog", "200"), memoryLimitMb: 100 })
      const status = yield* hog.wait
      expect(status).toMatchObject({ _tag: "Failed", reason: "MemoryLimitExceeded", signal: "SIGKILL" })

      const modest = yield* pm.spawn({ ...child("hog", "10"), memoryLimitMb: 500 })
      expect(yield* firstLine(modest.stdout())).toBe("HOGGED")
      const stats = Option.getOrThrow(yield* modest.stats)
      expect(stats.processes).toBe(1)
      expect(stats.rssBytes).toBeGreaterThan(10 * 1024 * 1024)
      expect((yield* modest.info).status._tag).toBe("Ready")
    }))

  it.live("a flooding child with a stuck reader blocks nothing else, and still stops at once", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const flood = yield* pm.spawn({ command: "yes", args: ["flood"] })
      // This reader takes one chunk and never another: the child is paused, not the manager.
      yield* flood.stdout().pipe(Stream.tap(() => Effect.never), Stream.runDrain, Effect.forkChild)
      for (let i = 0; i < 20; i++) {
        const other = yield* pm.spawn({ command: "true" })
        expect(yield* other.wait).toMatchObject({ _tag: "Exited", code: 0 })
      }
      const tail = yield* Stream.runCollect(flood.logs({ tail: 3 }))
      expect(tail.map((line) => line.text)).toEqual(["flood", "flood", "flood"])
      expect(yield* flood.terminate("2 seconds")).toMatchObject({ _tag: "Killed", signal: "SIGTERM" })
    }))

  it.live("stats cover the whole process tree: process count, CPU and memory", () =>
    Effect.gen(function*() {
      const pm = yield* manager({ sampleIntervalMs: 100 })
      const tree = yield* pm.spawn(child("tree", "2"))
      yield* firstLine(tree.stdout())
      // Stats are sampled every `sampleIntervalMs`, so the grandchildren show up within one interval.
      yield* until(() => Option.getOrThrow(Effect.runSync(tree.stats)).processes === 3, "the tree shows 3 processes")
      expect(Option.getOrThrow(yield* tree.stats).rssBytes).toBeGreaterThan(0)
      const busy = yield* pm.spawn({ command: "sh", args: ["-c", "while :; do :; done"] })
      yield* until(
        () => Option.match(Effect.runSync(busy.stats), { onNone: () => false, onSome: (s) => s.cpuPercent > 30 }),
        "a busy loop shows CPU use"
      )
      yield* busy.kill
      expect(Option.isNone(yield* busy.stats)).toBe(true)
    }))

  it.live("bad specs give typed errors and leave the manager serving", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempDir()
      const pm = yield* manager({ stateDir })
      const missing = yield* Effect.flip(pm.spawn({ command: "shardhub-no-such-program" }))
      expect(missing).toMatchObject({ _tag: "SpawnError", reason: "CommandNotFound" })
      const badCwd = yield* Effect.flip(pm.spawn({ command: "true", cwd: "/nonexistent/dir" }))
      expect(badCwd).toMatchObject({ _tag: "SpawnError", reason: "BadCwd" })
      const plainFile = Path.join(yield* tempDir(), "plain.txt")
      Fs.writeFileSync(plainFile, "not a program", { mode: 0o644 })
      const notExecutable = yield* Effect.flip(pm.spawn({ command: plainFile }))
      expect(notExecutable).toMatchObject({ _tag: "SpawnError", reason: "PermissionDenied" })
      const invalid = yield* Effect.flip(pm.spawn({ command: "" }))
      expect(invalid).toMatchObject({ _tag: "SpawnError", reason: "InvalidSpec" })
      const badLimit = yield* Effect.flip(pm.spawn({ command: "true", memoryLimitMb: -1 }))
      expect(badLimit).toMatchObject({ _tag: "SpawnError", reason: "InvalidSpec" })

      expect(yield* pm.list).toEqual([])
      // A refused spawn leaves no data directory behind (the plan makes it while it checks).
      expect(Fs.existsSync(Path.join(stateDir, "data")) ? Fs.readdirSync(Path.join(stateDir, "data")) : []).toEqual([])
      const ok = yield* pm.spawn({ command: "true" })
      expect(yield* ok.wait).toMatchObject({ _tag: "Exited", code: 0 })

      const unknown = "00000000-0000-4000-8000-000000000000"
      for (const operation of [pm.get(unknown), pm.remove(unknown)]) {
        expect(yield* Effect.flip(operation as Effect.Effect<unknown, { _tag: string }>)).toMatchObject({ _tag: "ProcessNotFound", id: unknown })
      }
      const running = yield* pm.spawn({ command: "sleep", args: ["100"] })
      expect(yield* Effect.flip(pm.remove(running.id))).toMatchObject({ _tag: "StillRunning" })
      yield* running.kill
      yield* pm.remove(running.id)
      expect((yield* pm.list).map((info) => info.id)).toEqual([ok.id])
    }))
})
