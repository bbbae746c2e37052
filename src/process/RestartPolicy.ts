/**
 * The restart policy of a process, above its single runs: after each run's end (or a failed
 * spawn) it decides whether the process is over or runs again, and after how long. A schedule in
 * Effect's sense (`Schedule.exponential` capped, reset by a run that stayed up, limited by a
 * sliding window), written as a plain step function because the process's state machine is
 * driven synchronously by Node's callbacks.
 *
 * @since 0.6.0
 */
import type { ResolvedSpec } from "./ProcessSpec.ts"
import { isFailure, type Terminal } from "./ProcessStatus.ts"

/**
 * @since 0.6.0
 */
export type Decision =
  | { readonly _tag: "Final"; readonly terminal: Terminal }
  | { readonly _tag: "Restart"; readonly delayMs: number }

/**
 * @since 0.6.0
 */
export interface RestartPolicy {
  /** What follows a run that ended with `terminal` after `uptimeMs`; `Restart` counts a restart. */
  readonly next: (terminal: Terminal, uptimeMs: number, now: number) => Decision
}

const describe = (terminal: Terminal) =>
  terminal._tag === "Exited"
    ? `code ${terminal.code}`
    : terminal._tag === "Killed"
    ? terminal.signal
    : `${terminal.reason}: ${terminal.message}`

/**
 * The policy of `spec.restart`.
 *
 * @since 0.6.0
 */
export const make = (restart: ResolvedSpec["restart"]): RestartPolicy => {
  const times: Array<number> = []
  let backoffMs = restart.backoffMs
  return {
    next: (terminal, uptimeMs, now) => {
      if (restart.mode === "never" || (restart.mode === "on-failure" && !isFailure(terminal))) {
        return { _tag: "Final", terminal }
      }
      while (times.length > 0 && times[0]! <= now - restart.windowMs) times.shift()
      if (times.length >= restart.maxRestarts) {
        return {
          _tag: "Final",
          terminal: {
            _tag: "Failed",
            reason: "RestartLimitReached",
            message: `${times.length} restarts within ${restart.windowMs} ms; last run ended with ${describe(terminal)}`,
            ...(terminal._tag === "Exited" ? { code: terminal.code } : {}),
            ...(terminal._tag === "Killed" ? { signal: terminal.signal } : {}),
            crashLog: terminal.crashLog
          }
        }
      }
      if (uptimeMs >= restart.minUptimeMs) backoffMs = restart.backoffMs
      const delayMs = backoffMs
      backoffMs = Math.min(restart.backoffMaxMs, Math.max(1, backoffMs) * restart.backoffFactor)
      times.push(now + delayMs)
      return { _tag: "Restart", delayMs }
    }
  }
}
