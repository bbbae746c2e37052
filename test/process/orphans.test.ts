/**
 * No orphans: a manager that is SIGKILLed takes its children and grandchildren with it (the
 * reaper), and when even the reaper was killed, the next incarnation on the same state
 * directory kills what was left before it starts anything.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { isRunning, tempDir, until } from "../support/processManager.ts"
import { root } from "../support/processes.ts"

interface Started {
  readonly manager: ChildProcess.ChildProcess
  readonly pids: ReadonlyArray<number>
  readonly swept: number
  readonly spare?: number
}

/** Starts test/process/fixtures/manager.ts and waits for its report; SIGKILLs it at scope end. */
const startManager = (stateDir: string, trees: number, spare = false) =>
  Effect.acquireRelease(
    Effect.callback<Started, Error>((resume) => {
      const args = [Path.join(root, "test/process/fixtures/manager.ts"), stateDir, String(trees), ...(spare ? ["spare"] : [])]
      const manager = ChildProcess.spawn(process.execPath, args, {
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      let errors = ""
      manager.stderr!.on("data", (chunk: Buffer) => {
        errors += chunk.toString()
      })
      manager.stdout!.on("data", (chunk: Buffer) => {
        output += chunk.toString()
        const line = output.split("\n")[0]
        if (output.includes("\n")) {
          const report = JSON.parse(line!) as { pids: Array<number>; swept: number; spare?: number }
          resume(Effect.succeed({ manager, ...report }))
        }
      })
      manager.once("exit", (code) => resume(Effect.fail(new Error(`manager exited early (${code}): ${errors}`))))
    }),
    ({ manager }) => Effect.sync(() => manager.kill("SIGKILL"))
  )

/** The pid of the reaper serving `stateDir`, found by its command line. */
const reaperOf = (stateDir: string): number => {
  const token = Fs.readFileSync(Path.join(stateDir, "token"), "utf8").trim()
  for (const entry of Fs.readdirSync("/proc")) {
    try {
      const cmdline = Fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0")
      if (cmdline.some((arg) => arg.endsWith("reaper.js")) && cmdline.includes(token)) return Number(entry)
    } catch {
      // gone
    }
  }
  throw new Error("no reaper found")
}

describe("ProcessManager orphans", () => {
  it.live("children and grandchildren die with a SIGKILLed manager", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempDir()
      const { manager, pids } = yield* startManager(stateDir, 3)
      expect(pids).toHaveLength(9)
      expect(pids.every(isRunning)).toBe(true)
      manager.kill("SIGKILL")
      yield* until(() => !pids.some(isRunning), "no child or grandchild is left")
    }))

  it.live("a spare started ahead for a Node sequence dies with a SIGKILLed manager", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempDir()
      const { manager, spare } = yield* startManager(stateDir, 0, true)
      expect(spare !== undefined && isRunning(spare)).toBe(true)
      // It carries the supervisor's tag from its start, like every child: the reaper's sweep
      // finds it by that.
      const token = Fs.readFileSync(Path.join(stateDir, "token"), "utf8").trim()
      expect(Fs.readFileSync(`/proc/${spare}/environ`, "utf8").split("\0")).toContain(`SHARDHUB_SUPERVISOR=${token}`)
      manager.kill("SIGKILL")
      yield* until(() => !isRunning(spare!), "the spare is gone")
    }))

  it.live("the next incarnation kills what a previous one left when even its reaper was killed", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempDir()
      const first = yield* startManager(stateDir, 2)
      const reaper = reaperOf(stateDir)
      process.kill(reaper, "SIGKILL")
      yield* until(() => !isRunning(reaper), "the reaper is gone")
      first.manager.kill("SIGKILL")
      yield* until(() => !isRunning(first.manager.pid!), "the first manager is gone")
      expect(first.pids.every(isRunning)).toBe(true)

      const second = yield* startManager(stateDir, 1)
      expect(second.swept).toBeGreaterThanOrEqual(first.pids.length)
      expect(first.pids.some(isRunning)).toBe(false)
      expect(second.pids.every(isRunning)).toBe(true)
    }))

  it.live("a second live manager on the same state directory is refused", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempDir()
      yield* startManager(stateDir, 0)
      const exit = yield* Effect.exit(startManager(stateDir, 0))
      expect(exit._tag).toBe("Failure")
      expect(String(exit)).toContain("in use by process")
    }))
})
