/**
 * Helpers for ProcessManager tests: a manager on a fresh state directory for the test's scope,
 * the fixture child, and process-table checks.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect, Schedule, Scope } from "effect"
import * as ProcessManager from "../../src/process/ProcessManager.ts"
import { processState, root } from "./processes.ts"

/** `node child.mjs <mode> …`: see test/process/fixtures/child.mjs. */
export const child = (mode: string, ...args: ReadonlyArray<string>) => ({
  command: process.execPath,
  args: [Path.join(root, "test/process/fixtures/child.mjs"), mode, ...args]
})

/** A fresh state directory, removed when the scope closes. */
export const tempDir = (prefix = "shardhub-pm-") =>
  Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

/** A manager for the test's scope, on a fresh state directory. */
export const manager = (config: Partial<ProcessManager.Config> = {}) =>
  Effect.gen(function*() {
    const stateDir = yield* tempDir()
    return yield* ProcessManager.make({ stateDir, ...config })
  })

/** Whether a pid is a live (not zombie) process. */
export const isRunning = (pid: number): boolean => {
  const state = processState(pid)
  return state !== undefined && state !== "Z"
}

/** Waits (polling every 20 ms, up to `timeoutMs`) until `check` holds; fails otherwise. */
export const until = (check: () => boolean, what: string, timeoutMs = 10_000) =>
  Effect.suspend(() => check() ? Effect.void : Effect.fail(new Error(`timed out waiting until ${what}`))).pipe(
    Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: timeoutMs })))
  )

export type Scoped<A, E = never> = Effect.Effect<A, E, Scope.Scope>
