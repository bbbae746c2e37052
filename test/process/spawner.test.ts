/**
 * The spawner: children are forked by a small helper process that hands the manager their pipes.
 * What it must never do is mix up whose pipe is whose under concurrency, lose a byte a child
 * wrote before its pipes arrived, or — when the helper itself dies — leave children running
 * that nobody watches.
 */
import * as Fs from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { parentOf } from "../support/processes.ts"
import { isRunning, manager, until } from "../support/processManager.ts"

const text = <E>(stream: Stream.Stream<Uint8Array, E>) => stream.pipe(Stream.decodeText(), Stream.mkString)

const commandOf = (pid: number) => Fs.readFileSync(`/proc/${pid}/cmdline`, "utf8")

describe("ProcessManager spawner", () => {
  it.live("many concurrent spawns each get their own pipes, and every byte", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      for (let round = 0; round < 3; round++) {
        const results = yield* Effect.forEach(Array.from({ length: 48 }, (_, i) => `${round}-${i}`), (n) =>
          Effect.gen(function*() {
            // Output written at once (before the manager has the pipes), then the stdin echoed.
            const handle = yield* pm.spawn({
              command: "sh",
              args: ["-c", "echo \"early-$N\"; echo \"err-$N\" >&2; read x; echo \"$x\""],
              env: { set: { N: n } }
            })
            yield* Stream.run(Stream.make(new TextEncoder().encode(`input-${n}\n`)), handle.stdin())
            const [stdout, stderr] = yield* Effect.all([text(handle.stdout()), text(handle.stderr())], { concurrency: 2 })
            const status = yield* handle.wait
            return { n, stdout, stderr, status }
          }), { concurrency: "unbounded" })
        for (const { n, status, stderr, stdout } of results) {
          expect(stdout).toBe(`early-${n}\ninput-${n}\n`)
          expect(stderr).toBe(`err-${n}\n`)
          expect(status).toMatchObject({ _tag: "Exited", code: 0 })
        }
      }
    }), 60_000)

  it.live("a burst of spawns is spread over at most 4 helpers; one helper's death takes only its own children", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const handles = yield* Effect.forEach(Array.from({ length: 24 }), () => pm.spawn({ command: "sleep", args: ["3600"] }), {
        concurrency: "unbounded"
      })
      const pids = yield* Effect.forEach(handles, (handle) => Effect.map(handle.info, (info) => info.pid!))
      const helpers = new Set(pids.map(parentOf))
      expect(helpers.size).toBeGreaterThan(1)
      expect(helpers.size).toBeLessThanOrEqual(4)
      for (const helper of helpers) expect(commandOf(helper)).toContain("spawner.js")
      const [dying] = helpers
      const mine = pids.filter((pid) => parentOf(pid) === dying)
      expect(mine.length).toBeGreaterThan(0)
      process.kill(dying!, "SIGKILL")
      for (const [i, handle] of handles.entries()) {
        if (mine.includes(pids[i]!)) expect(yield* handle.wait).toMatchObject({ _tag: "Killed", signal: "SIGKILL" })
      }
      // The others' helpers live on, and so do their children.
      for (const pid of pids.filter((pid) => !mine.includes(pid))) expect(isRunning(pid)).toBe(true)
      yield* Effect.forEach(handles, (handle) => handle.kill, { discard: true })
    }), 30_000)

  it.live("a spawner that dies takes its children with it, reports them killed, and is replaced", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const once = yield* pm.spawn({ command: "sleep", args: ["3600"] })
      const always = yield* pm.spawn({
        command: "sleep",
        args: ["3600"],
        restart: { mode: "always", maxRestarts: 5, backoffMs: 20, backoffFactor: 1 }
      })
      const oncePid = (yield* once.info).pid!
      const firstPid = (yield* always.info).pid!
      const spawner = parentOf(oncePid)
      expect(parentOf(firstPid)).toBe(spawner)
      expect(commandOf(spawner)).toContain("spawner.js")
      process.kill(spawner, "SIGKILL")

      // Its exit statuses are gone with it: the children are killed, never left unwatched.
      expect(yield* once.wait).toMatchObject({ _tag: "Killed", signal: "SIGKILL" })
      yield* until(() => !isRunning(oncePid) && !isRunning(firstPid), "the children of the dead spawner are gone")
      // The restart policy goes on through a new spawner.
      yield* until(() => {
        const pid = Effect.runSync(always.info).pid
        return pid !== undefined && pid !== firstPid && isRunning(pid)
      }, "the restarted run is running")
      const replaced = parentOf((yield* always.info).pid!)
      expect(replaced).not.toBe(spawner)
      expect(commandOf(replaced)).toContain("spawner.js")
      const after = yield* pm.spawn({ command: "sh", args: ["-c", "echo fine"] })
      expect(yield* text(after.stdout())).toBe("fine\n")
    }), 30_000)
})
