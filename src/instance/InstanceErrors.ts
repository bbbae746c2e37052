/**
 * Errors a user can cause when working with instances. Each is a schema, so it survives the
 * trip from a runner to a client unchanged.
 *
 * @since 0.3.0
 */
import { Schema } from "effect"

/**
 * @since 0.3.0
 */
export class InstanceNotFound extends Schema.TaggedError<InstanceNotFound>()("InstanceNotFound", {
  id: Schema.String
}) {
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
}) {}

/**
 * The cluster store failed; the operation may be retried.
 *
 * @since 0.3.0
 */
export class RegistryError extends Schema.TaggedError<RegistryError>()("RegistryError", {
  message: Schema.String
}) {}

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
}) {}

/**
 * The process did not end even after it was killed.
 *
 * @since 0.3.0
 */
export class StopTimeout extends Schema.TaggedError<StopTimeout>()("StopTimeout", {
  id: Schema.String,
  message: Schema.String
}) {}

/**
 * The operation does not apply to this instance (for example `output` of a stream the
 * instance does not have).
 *
 * @since 0.3.0
 */
export class Unsupported extends Schema.TaggedError<Unsupported>()("Unsupported", {
  message: Schema.String
}) {}
