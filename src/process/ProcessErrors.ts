/**
 * Typed errors of the ProcessManager, one per way an operation can fail (seed 002's names).
 *
 * @since 0.2.0
 */
import { Schema } from "effect"
import { Terminal } from "./ProcessStatus.ts"

/**
 * The process could not be started. Nothing was left running.
 *
 * @since 0.2.0
 */
export class SpawnError extends Schema.TaggedError<SpawnError>()("SpawnError", {
  reason: Schema.Literals(["CommandNotFound", "PermissionDenied", "BadCwd", "InvalidSpec", "Capacity", "System"]),
  message: Schema.String
}) {}

/**
 * No process with this id is known to the manager.
 *
 * @since 0.2.0
 */
export class ProcessNotFound extends Schema.TaggedError<ProcessNotFound>()("ProcessNotFound", {
  id: Schema.String
}) {
  override get message() {
    return `no process with id ${this.id}`
  }
}

/**
 * A signal could not be delivered (for example, the process belongs to another user).
 *
 * @since 0.2.0
 */
export class KillError extends Schema.TaggedError<KillError>()("KillError", {
  id: Schema.String,
  message: Schema.String
}) {}

/**
 * A message could not be written to the process.
 *
 * @since 0.2.0
 */
export class WriteMessageError extends Schema.TaggedError<WriteMessageError>()("WriteMessageError", {
  id: Schema.String,
  reason: Schema.Literals(["NoChannel", "NotRunning", "Encode", "TooLarge", "Io"]),
  message: Schema.String
}) {}

/**
 * Bytes could not be written to the process' stdin.
 *
 * @since 0.2.0
 */
export class StdinError extends Schema.TaggedError<StdinError>()("StdinError", {
  id: Schema.String,
  reason: Schema.Literals(["NotPiped", "NotRunning", "Closed"]),
  message: Schema.String
}) {}

/**
 * The process ended before it became ready.
 *
 * @since 0.2.0
 */
export class NotReady extends Schema.TaggedError<NotReady>()("NotReady", {
  id: Schema.String,
  status: Terminal
}) {
  override get message() {
    return `process ${this.id} ended before it was ready (${this.status._tag})`
  }
}

/**
 * The operation needs an ended process (e.g. `remove`).
 *
 * @since 0.2.0
 */
export class StillRunning extends Schema.TaggedError<StillRunning>()("StillRunning", {
  id: Schema.String
}) {
  override get message() {
    return `process ${this.id} is still running`
  }
}

/**
 * The manager's state directory could not be used (another live manager owns it, or it is not
 * writable).
 *
 * @since 0.2.0
 */
export class StateDirError extends Schema.TaggedError<StateDirError>()("StateDirError", {
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * Logs could not be read.
 *
 * @since 0.2.0
 */
export class LogsError extends Schema.TaggedError<LogsError>()("LogsError", {
  id: Schema.String,
  message: Schema.String
}) {}
