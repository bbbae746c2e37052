/**
 * The manager's claim on its state directory and its guarantee that no child outlives it.
 *
 * - **Ownership**: `owner.json` records the live manager (pid + start time). A second live
 *   manager on the same directory is refused; a dead one's claim is taken over.
 * - **Identity**: `token` is a random id kept in the directory across incarnations. Every child
 *   gets it in `SHARDHUB_SUPERVISOR`, and so do its descendants.
 * - **Reaper**: a small detached helper (`reaper.js`) that first kills everything carrying the
 *   token (what a previous incarnation left), and then kills the manager's process groups and
 *   tagged processes as soon as the manager is gone — even after a SIGKILL, because the kernel
 *   closes the pipe it watches. `setpriv --pdeathsig` would only cover the direct child and costs
 *   1.3 ms per spawn here (measured), more than the whole spawn budget.
 *
 * @since 0.2.0
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Effect, Scope } from "effect"
import { StateDirError } from "./ProcessErrors.ts"
import { startTime } from "./ProcStats.ts"

/**
 * @since 0.2.0
 */
export interface Supervisor {
  readonly token: string
  /** Processes left by a previous incarnation that were killed at start. */
  readonly swept: number
  /** Tells the reaper about a process group to kill if the manager dies. */
  readonly watch: (pgid: number) => void
  readonly unwatch: (pgid: number) => void
  /** Arms the reaper's fence: unless renewed within `ms`, it stops (SIGSTOP) every group. */
  readonly fence: (ms: number) => void
  /** Called each time the reaper's fence stopped the groups. */
  readonly onFreeze: (listener: () => void) => void
}

const reaperPath = Path.join(import.meta.dirname, "reaper.js")

const fail = (path: string, message: string) => new StateDirError({ path, message })

const claim = (stateDir: string) =>
  Effect.try({
    try: () => {
      // Traversable (a child's data directory lies below) but not listable by others.
      Fs.mkdirSync(stateDir, { recursive: true, mode: 0o711 })
      Fs.chmodSync(stateDir, 0o711)
      const ownerPath = Path.join(stateDir, "owner.json")
      try {
        const owner = JSON.parse(Fs.readFileSync(ownerPath, "utf8")) as { pid: number; start: number }
        if (owner.pid !== process.pid && startTime(owner.pid) === owner.start) {
          return { busy: owner.pid }
        }
      } catch {
        // no owner, or an unreadable claim: take it
      }
      Fs.writeFileSync(ownerPath, JSON.stringify({ pid: process.pid, start: startTime(process.pid) }), { mode: 0o600 })
      const tokenPath = Path.join(stateDir, "token")
      let token: string
      try {
        token = Fs.readFileSync(tokenPath, "utf8").trim()
      } catch {
        token = Crypto.randomUUID()
        Fs.writeFileSync(tokenPath, token, { mode: 0o600 })
      }
      return { token, ownerPath }
    },
    catch: (error) => fail(stateDir, `cannot use the state directory: ${(error as Error).message}`)
  }).pipe(
    Effect.flatMap((result) =>
      "busy" in result
        ? Effect.fail(fail(stateDir, `the state directory ${stateDir} is in use by process ${result.busy}`))
        : Effect.succeed(result)
    )
  )

const startReaper = (stateDir: string, token: string) =>
  Effect.callback<{ child: ChildProcess.ChildProcess; swept: number }, StateDirError>((resume) => {
    const child = ChildProcess.spawn(process.execPath, [reaperPath, token], {
      detached: true,
      stdio: ["pipe", "pipe", "inherit"]
    })
    let output = ""
    const onExit = (code: number | null) =>
      resume(Effect.fail(fail(stateDir, `the reaper exited before it was ready (code ${code})`)))
    child.once("exit", onExit)
    child.once("error", (error) => resume(Effect.fail(fail(stateDir, `cannot start the reaper: ${error.message}`))))
    child.stdout!.setEncoding("utf8")
    child.stdout!.on("data", (chunk: string) => {
      output += chunk
      const match = /^ready (\d+)\n/.exec(output)
      if (match === null) return
      child.off("exit", onExit)
      child.stdout!.removeAllListeners("data")
      child.unref()
      ;(child.stdin as unknown as { unref(): void }).unref()
      ;(child.stdout as unknown as { unref(): void }).unref()
      resume(Effect.succeed({ child, swept: Number(match[1]) }))
    })
  })

/**
 * Claims `stateDir`, kills what a previous incarnation left, and starts the reaper. Closing the
 * scope stops the reaper (which kills any group still watched) and releases the claim.
 *
 * @since 0.2.0
 */
export const acquire = (stateDir: string): Effect.Effect<Supervisor, StateDirError, Scope.Scope> =>
  Effect.gen(function*() {
    const { ownerPath, token } = yield* claim(stateDir)
    const { child, swept } = yield* Effect.acquireRelease(
      startReaper(stateDir, token),
      ({ child }) =>
        Effect.sync(() => {
          child.stdin?.end()
          Fs.rmSync(ownerPath, { force: true })
        })
    )
    const write = (line: string) => {
      if (child.stdin?.writable) child.stdin.write(line)
    }
    const freezeListeners: Array<() => void> = []
    let lines = ""
    child.stdout!.on("data", (chunk: string) => {
      lines += chunk
      let end = lines.indexOf("\n")
      while (end >= 0) {
        if (lines.slice(0, end) === "frozen") for (const listener of freezeListeners) listener()
        lines = lines.slice(end + 1)
        end = lines.indexOf("\n")
      }
    })
    return {
      token,
      swept,
      watch: (pgid) => write(`+${pgid}\n`),
      unwatch: (pgid) => write(`-${pgid}\n`),
      fence: (ms) => write(`f${Math.max(0, Math.floor(ms))}\n`),
      onFreeze: (listener) => freezeListeners.push(listener)
    }
  })

/**
 * The fence: a watchdog outside the manager's process (its reaper) that stops (SIGSTOP) every
 * process unless `renew` is called again within the time it gives. Whoever owns the processes'
 * right to run (a runner's shard locks) renews it each time it proved that right, and continues
 * (`thaw`) the processes it still has a right to after a freeze.
 *
 * @since 0.5.0
 */
export interface Fencing {
  /** Stops every process `ms` from now, unless renewed before. */
  readonly renew: (ms: number) => void
  /** Called each time the fence stopped the processes. */
  readonly onFreeze: (listener: () => void) => void
  /** Continues (SIGCONT) the live process group of `id`, if any. */
  readonly thaw: (id: string) => void
}
