/**
 * Where a process is in its life (hyperactor's `ProcStatus`): Starting → Running → Ready →
 * Stopping → one terminal status, plus `Backoff` between the runs of a restarting process.
 *
 * A terminal status is final and is only ever made from an observed exit.
 *
 * @since 0.2.0
 */
import { Schema } from "effect"

/**
 * Last lines of the process' output (stderr and stdout, in order), attached when it did not end
 * cleanly.
 *
 * @since 0.2.0
 */
export const CrashLog = Schema.Array(Schema.String)

/** The process exited by itself (or after a polite stop) with this code. @since 0.2.0 */
export const Exited = Schema.TaggedStruct("Exited", { code: Schema.Int, crashLog: CrashLog })
/** A signal ended the process. @since 0.2.0 */
export const Killed = Schema.TaggedStruct("Killed", { signal: Schema.String, crashLog: CrashLog })

/**
 * Why a process failed when the exit code or signal alone does not say it.
 *
 * @since 0.2.0
 */
export const FailureReason = Schema.Literals([
  "SpawnFailed",
  "MemoryLimitExceeded",
  "ReadyTimeout",
  "LivenessFailed",
  "RestartLimitReached"
])
/** @since 0.2.0 */
export type FailureReason = typeof FailureReason.Type

/** The manager ended the process (or could not start it) for `reason`. @since 0.2.0 */
export const Failed = Schema.TaggedStruct("Failed", {
  reason: FailureReason,
  message: Schema.String,
  code: Schema.optionalKey(Schema.Int),
  signal: Schema.optionalKey(Schema.String),
  crashLog: CrashLog
})

/**
 * @since 0.2.0
 */
export const Terminal = Schema.Union([Exited, Killed, Failed])
/** @since 0.2.0 */
export type Terminal = typeof Terminal.Type

/**
 * @since 0.2.0
 */
export const Status = Schema.Union([
  Schema.TaggedStruct("Starting", {}),
  Schema.TaggedStruct("Running", { pid: Schema.Int, startedAt: Schema.Number }),
  Schema.TaggedStruct("Ready", { pid: Schema.Int, startedAt: Schema.Number, readyAt: Schema.Number }),
  Schema.TaggedStruct("Stopping", { pid: Schema.Int, startedAt: Schema.Number }),
  Schema.TaggedStruct("Backoff", { restartAt: Schema.Number, last: Terminal }),
  Exited,
  Killed,
  Failed
])
/** @since 0.2.0 */
export type Status = typeof Status.Type

/**
 * Whether a status is terminal.
 *
 * @since 0.2.0
 */
export const isTerminal = (status: Status): status is Terminal =>
  status._tag === "Exited" || status._tag === "Killed" || status._tag === "Failed"

/**
 * Whether a terminal status counts as a failure for `on-failure` restarts and crash logs.
 *
 * @since 0.2.0
 */
export const isFailure = (status: Terminal): boolean => !(status._tag === "Exited" && status.code === 0)

/**
 * A snapshot of one managed process.
 *
 * @since 0.2.0
 */
export const ProcessInfo = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  command: Schema.String,
  args: Schema.Array(Schema.String),
  /** OS pid of the current (or last) run; also its process group id. */
  pid: Schema.optionalKey(Schema.Int),
  status: Status,
  restarts: Schema.Int,
  createdAt: Schema.Number,
  startedAt: Schema.optionalKey(Schema.Number),
  endedAt: Schema.optionalKey(Schema.Number),
  dataDir: Schema.String
})
/** @since 0.2.0 */
export type ProcessInfo = typeof ProcessInfo.Type

/**
 * Resource use of a process tree, from `/proc`.
 *
 * @since 0.2.0
 */
export const ProcessStats = Schema.Struct({
  /** Processes in the group (the child and its descendants that stayed in it). */
  processes: Schema.Int,
  /** CPU over the last sampling interval, in percent of one core. */
  cpuPercent: Schema.Number,
  rssBytes: Schema.Number,
  sampledAt: Schema.Number
})
/** @since 0.2.0 */
export type ProcessStats = typeof ProcessStats.Type
