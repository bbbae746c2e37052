/**
 * One run of a managed process: one OS process in its own process group, from spawn to the
 * moment its end is settled. Facts and their sources:
 *
 * - A run is settled after `'exit'` was observed and after `'close'` (all output read) or a short
 *   grace period, whichever comes first — a background grandchild holding the pipe must not delay
 *   the status (seed 003; PROCESS-SUPERVISION §0.5).
 * - When a run's main process exits, what is left of its process group is killed (systemd's
 *   control-group semantics), so a run never leaves anything behind.
 * - A stop asks once (a signal, or the `stop` control message) and SIGKILLs the group at the
 *   earliest deadline any caller asked for.
 *
 * @since 0.6.0
 */
import * as Fs from "node:fs"
import type * as Net from "node:net"
import * as Path from "node:path"
import type { Readable, Writable } from "node:stream"
import type { Identity } from "./Confinement.ts"
import type { ProcessStats } from "./ProcessStatus.ts"
import type { ResolvedSpec } from "./ProcessSpec.ts"
import { groupKill, type Spawner } from "./Spawner.ts"

/** The data input and output of a process with data channels. */
export const INPUT_FD = 4
export const OUTPUT_FD = 5

/**
 * One run. Its fields are changed only by the launcher and the process that owns it, from
 * Node's callbacks (no locks needed: each callback runs to completion).
 *
 * @since 0.6.0
 */
export interface Run {
  readonly pid: number
  readonly startedAt: number
  readonly stdin: Writable | undefined
  readonly stdout: Readable
  readonly stderr: Readable
  readonly channel: Net.Socket | undefined
  readonly input: Writable | undefined
  readonly output: Readable | undefined
  /** The port its fd-6 listener (`spec.listener`) takes connections on. */
  readonly listening: number | undefined
  exit: { readonly code: number | null; readonly signal: NodeJS.Signals | null } | undefined
  closed: boolean
  settled: boolean
  /** Set when the manager ended the run for a reason of its own. */
  failure: { readonly reason: "MemoryLimitExceeded" | "ReadyTimeout" | "LivenessFailed"; readonly message: string } | undefined
  stopRequested: boolean
  killTimer: ReturnType<typeof setTimeout> | undefined
  killDeadline: number
  readyTimer: ReturnType<typeof setTimeout> | undefined
  usage: { ticks: number; at: number } | undefined
  stats: ProcessStats | undefined
}

/**
 * What a launch needs: the resolved executable, argv, environment and identity, and whom to tell.
 *
 * @since 0.6.0
 */
export interface Launch {
  readonly spawner: Spawner
  readonly spec: ResolvedSpec
  readonly file: string
  readonly argv: ReadonlyArray<string>
  readonly env: Record<string, string>
  readonly identity: Identity | undefined
  readonly closeGraceMs: number
  /** The run's end is known (exit seen, output read or the grace period over). Called once. */
  readonly settled: (run: Run) => void
  /** All of the run's output was read. */
  readonly closed: (run: Run) => void
}

/**
 * Spawns a run (through the spawner): `spawned` gets it, or `failed` why the OS refused.
 *
 * @since 0.6.0
 */
export const spawn = (
  launch: Launch,
  spawned: (run: Run) => void,
  /** The OS refused: its error, and what it means (Node says ENOENT of the command for a missing cwd). */
  failed: (error: NodeJS.ErrnoException, message: string) => void
): void => {
  const { spec } = launch
  launch.spawner.spawn(launch.file, launch.argv, {
    argv0: spec.shell ? "sh" : spec.command,
    ...(spec.cwd === undefined ? {} : { cwd: spec.cwd }),
    env: launch.env,
    ...(launch.identity === undefined ? {} : { uid: launch.identity.uid, gid: launch.identity.gid }),
    detached: true,
    spare: spec.prestart,
    stdio: [
      spec.stdin === "pipe" ? "pipe" : "ignore",
      "pipe",
      "pipe",
      ...(spec.messages || spec.dataChannels ? [spec.messages ? "pipe" as const : "ignore" as const] : []),
      ...(spec.dataChannels ? ["pipe" as const, "pipe" as const] : []),
      ...(spec.listener ? ["listen" as const] : [])
    ]
  }, (child) => {
    if (child instanceof Error) return failed(child, describeSpawnError(spec, child))
    const { stdio } = child
    const run: Run = {
      pid: child.pid,
      startedAt: Date.now(),
      stdin: stdio[0],
      stdout: stdio[1]!,
      stderr: stdio[2]!,
      channel: spec.messages ? stdio[3] : undefined,
      input: spec.dataChannels ? stdio[INPUT_FD] : undefined,
      output: spec.dataChannels ? stdio[OUTPUT_FD] : undefined,
      listening: child.listening,
      exit: undefined,
      closed: false,
      settled: false,
      failure: undefined,
      stopRequested: false,
      killTimer: undefined,
      killDeadline: Infinity,
      readyTimer: undefined,
      usage: undefined,
      stats: undefined
    }
    const settle = () => {
      if (run.settled || run.exit === undefined) return
      run.settled = true
      if (run.killTimer !== undefined) clearTimeout(run.killTimer)
      if (run.readyTimer !== undefined) clearTimeout(run.readyTimer)
      launch.settled(run)
    }
    child.on("exit", (code: number | null, signal: NodeJS.Signals | null) => {
      run.exit = { code, signal }
      // Whatever the main process left in its group goes with it.
      groupKill(run.pid, "SIGKILL")
      setTimeout(settle, launch.closeGraceMs)
    })
    child.on("close", () => {
      run.closed = true
      settle()
      launch.closed(run)
    })
    spawned(run)
  })
}

const describeSpawnError = (spec: ResolvedSpec, error: NodeJS.ErrnoException): string => {
  const cwd = Path.resolve(spec.cwd ?? process.cwd())
  return error.code === "ENOENT" && !Fs.statSync(cwd, { throwIfNoEntry: false })?.isDirectory()
    ? `working directory ${cwd} does not exist or is not a directory (${error.message})`
    : error.message
}

/**
 * Asks a run to stop with `ask` (once), and SIGKILLs its group at the earliest deadline any
 * caller asked for. Returns why the signal could not be sent, if it could not.
 *
 * @since 0.6.0
 */
export const requestStop = (run: Run, timeoutMs: number, ask: () => string | undefined): string | undefined => {
  if (run.exit !== undefined) return undefined
  let error: string | undefined
  if (!run.stopRequested) {
    run.stopRequested = true
    error = ask()
  }
  const deadline = Date.now() + timeoutMs
  if (deadline < run.killDeadline) {
    run.killDeadline = deadline
    if (run.killTimer !== undefined) clearTimeout(run.killTimer)
    run.killTimer = setTimeout(() => {
      if (run.exit === undefined) groupKill(run.pid, "SIGKILL")
    }, Math.max(0, timeoutMs))
  }
  return error
}
