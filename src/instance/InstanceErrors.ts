/**
 * Errors a user can cause when working with instances. Each is a schema, so it survives the
 * trip from a runner to a client unchanged.
 *
 * @since 0.3.0
 */
import { reasonStatus } from "../base/HttpStatus.ts"
import { Schema } from "effect"

/**
 * @since 0.3.0
 */
export class InstanceNotFound extends Schema.TaggedError<InstanceNotFound>()("InstanceNotFound", {
  id: Schema.String
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 404
  }
  override get message() {
    return `no instance with id ${this.id}`
  }
}

/**
 * An instance with this id was already started (by another request).
 *
 * @since 0.3.0
 */
export class InstanceAlreadyExists extends Schema.TaggedError<InstanceAlreadyExists>()("InstanceAlreadyExists", {
  id: Schema.String
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 409
  }
  override get message() {
    return `an instance with id ${this.id} already exists`
  }
}

/**
 * The instance is not running, so the operation cannot reach its process.
 *
 * @since 0.3.0
 */
export class NotRunning extends Schema.TaggedError<NotRunning>()("NotRunning", {
  id: Schema.String,
  status: Schema.String
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 400
  }
  override get message() {
    return `instance ${this.id} is not running (${this.status})`
  }
}

/**
 * The spec cannot be run as given.
 *
 * @since 0.3.0
 */
export class InvalidSpec extends Schema.TaggedError<InvalidSpec>()("InvalidSpec", {
  message: Schema.String
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 422
  }
}

/**
 * The cluster store failed; the operation may be retried.
 *
 * @since 0.3.0
 */
export class RegistryError extends Schema.TaggedError<RegistryError>()("RegistryError", {
  message: Schema.String
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 500
  }
}

/**
 * The process of a new instance could not be started (missing program, bad working
 * directory, …). The instance is recorded as crashed with the same reason.
 *
 * @since 0.3.0
 */
export class StartFailed extends Schema.TaggedError<StartFailed>()("StartFailed", {
  id: Schema.String,
  reason: Schema.String,
  message: Schema.String
}) {
  /** The HTTP status the gateway answers it with, by its reason. */
  get httpStatus(): number {
    return reasonStatus(this.reason)
  }
}

/**
 * A start whose answer was lost (no answer in time, the store or the runner out of reach). It
 * was either called off before it could run (`cancelled`: nothing runs under this id, ever), or
 * the instance was registered by then and may still start (`unconfirmed`: the id is named so
 * that it can be followed or stopped, never started twice under another id).
 *
 * @since 0.5.0
 */
export class StartUnconfirmed extends Schema.TaggedError<StartUnconfirmed>()("StartUnconfirmed", {
  id: Schema.String,
  /** What went wrong, e.g. `got no answer within 30000 ms`. */
  reason: Schema.String,
  outcome: Schema.Literals(["cancelled", "unconfirmed"])
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 503
  }
  override get message() {
    return this.outcome === "cancelled"
      ? `start of instance ${this.id} ${this.reason} and was called off: nothing runs under this id`
      : `start of instance ${this.id} ${this.reason}; it is registered and may still start: ` +
        `follow it with \`shardhub info ${this.id}\`, or stop it with \`shardhub stop ${this.id}\``
  }
}

/**
 * The runner could not signal the instance's process (the OS refused, e.g. EPERM): a stop or
 * kill did not happen, and the process may still run.
 *
 * @since 0.6.0
 */
export class SignalFailed extends Schema.TaggedError<SignalFailed>()("SignalFailed", {
  id: Schema.String,
  message: Schema.String
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 500
  }
}
