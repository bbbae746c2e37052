/**
 * What a process's statuses mean for an instance's record, and how reports of them are retried.
 *
 * @since 0.5.0
 */
import { Schedule } from "effect"
import type { Status, Terminal } from "../process/ProcessStatus.ts"
import type { Report } from "./Registry.ts"

/**
 * Reports wait out a store blip: again after 100 ms, doubling up to every 5 s.
 *
 * @since 0.5.0
 */
export const reportRetry = Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced("5 seconds")])

/**
 * What a terminal process status means for the record.
 *
 * @since 0.5.0
 */
export const endReport = (terminal: Terminal, stopRequested: boolean): Report => {
  const clean = terminal._tag === "Exited" && terminal.code === 0
  return {
    desired: "stopped",
    status: stopRequested || clean ? "stopped" : "crashed",
    pid: null,
    endedAt: Date.now(),
    exitCode: terminal._tag === "Exited" ? terminal.code : terminal._tag === "Failed" ? (terminal.code ?? null) : null,
    signal: terminal._tag === "Killed" ? terminal.signal : terminal._tag === "Failed" ? (terminal.signal ?? null) : null,
    reason: terminal._tag === "Failed" ? whyEnded(terminal) : null,
    crashLog: terminal.crashLog
  }
}

/**
 * What a live process status means for the record: `starting` until the process is ready,
 * `running` once it is; a run waiting to be restarted says why its last run ended.
 *
 * @since 0.5.0
 */
export const liveReport = (status: Status, restarts: number): Report | undefined => {
  switch (status._tag) {
    case "Running":
      return { status: "starting", pid: status.pid, startedAt: status.startedAt, restarts }
    case "Ready":
      return { status: "running", pid: status.pid, startedAt: status.startedAt, restarts }
    case "Stopping":
      return { status: "stopping" }
    case "Starting":
      return { status: "starting", pid: null, restarts }
    case "Backoff":
      return { status: "starting", pid: null, restarts, reason: whyEnded(status.last) }
    default:
      return undefined
  }
}

/** Why a run ended, in a record's words. */
const whyEnded = (terminal: Terminal): string => {
  switch (terminal._tag) {
    case "Failed":
      return `${terminal.reason}: ${terminal.message}`
    case "Exited":
      return `exit code ${terminal.code}`
    case "Killed":
      return `killed by ${terminal.signal}`
  }
}
