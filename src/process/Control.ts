/**
 * The in-child control protocol: the messages on a process's message channel whose
 * `$shardhub` key names a kind. One Schema for both directions, used by the ProcessManager
 * (readiness, log lines, the stop message), the Instance entity (health, keep-alive, topics,
 * kill, the epoch, input acks) and checked against both in-child runners (`src/sequence/runners/node.cjs` and
 * `python.py`) by the sequence tests. Anything else on the channel is the user's: events
 * `{"event","data"}` or any message a command's program sends.
 *
 * @since 0.6.0
 */
import { Schema } from "effect"

const kind = <K extends string>(name: K) => Schema.Literal(name)

/** The child is ready (readiness `Message`). @since 0.6.0 */
export const Ready = Schema.Struct({ $shardhub: kind("ready") })
/** A log line of the child's own, kept apart from its output. @since 0.6.0 */
export const Log = Schema.Struct({
  $shardhub: kind("log"),
  level: Schema.optionalKey(Schema.String),
  text: Schema.optionalKey(Schema.Unknown)
})
/** @since 0.6.0 */
export type Log = typeof Log.Type
/** The child's health, with whatever details its handlers added. @since 0.6.0 */
export const Health = Schema.StructWithRest(Schema.Struct({ $shardhub: kind("health"), healthy: Schema.Boolean }), [
  Schema.Record(Schema.String, Schema.Unknown)
])
/** A sequence asks to be kept alive (from a stop handler: the stop is called off). @since 0.6.0 */
export const KeepAlive = Schema.Struct({ $shardhub: kind("keepAlive"), ms: Schema.optionalKey(Schema.Number) })
/** Topics a sequence declares (STH's `requires` / `provides`). @since 0.6.0 */
export const Topics = Schema.Struct({
  $shardhub: kind("topics"),
  requires: Schema.optionalKey(Schema.NullOr(Schema.String)),
  provides: Schema.optionalKey(Schema.NullOr(Schema.String)),
  contentType: Schema.optionalKey(Schema.NullOr(Schema.String))
})

/** Whether the instance's epoch (`SHARDHUB_EPOCH`) is still the current one; answered with {@link EpochIs}. @since 0.9.0 */
export const Epoch = Schema.Struct({ $shardhub: kind("epoch") })

/**
 * The child consumed `bytes` bytes of its input so far (counted from its first): a durable
 * topic's cursor then follows exactly what it says, not an estimate (see `topic/Durable`).
 * @since 0.10.0
 */
export const Ack = Schema.Struct({ $shardhub: kind("ack"), bytes: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)) })

/**
 * A data connection the child took itself (see `instance/Direct`) closed: the bytes it read
 * (`in`) and wrote (`out`) on it, which the runner did not see, for the instance's byte metrics.
 * @since 0.11.0
 */
export const Bytes = Schema.Struct({
  $shardhub: kind("bytes"),
  in: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  out: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
})

/** What a child sends. @since 0.6.0 */
export const FromChild = Schema.Union([Ready, Log, Health, KeepAlive, Topics, Epoch, Ack, Bytes])
/** @since 0.6.0 */
export type FromChild = typeof FromChild.Type

/** Stop within `timeoutMs`; `canCallKeepalive`: the stop handlers may call it off. @since 0.6.0 */
export const Stop = Schema.Struct({
  $shardhub: kind("stop"),
  timeoutMs: Schema.Number,
  canCallKeepalive: Schema.optionalKey(Schema.Boolean)
})
/** Run the kill handlers, then exit. @since 0.6.0 */
export const Kill = Schema.Struct({ $shardhub: kind("kill") })

/**
 * The answer to {@link Epoch}: the process's epoch, and whether it is still the instance's
 * current one on record (false: another runner took the instance over; its writes are stale).
 * @since 0.9.0
 */
export const EpochIs = Schema.Struct({ $shardhub: kind("epoch"), epoch: Schema.Number, current: Schema.Boolean })

/**
 * To a spare started ahead (see `Spares`): become the process it would have been started as —
 * the rest of its argv, its whole environment, its working directory.
 * @since 0.11.0
 */
export const Become = Schema.Struct({
  $shardhub: kind("become"),
  args: Schema.Array(Schema.String),
  env: Schema.Record(Schema.String, Schema.String),
  cwd: Schema.String
})
/** @since 0.11.0 */
export type Become = typeof Become.Type

/**
 * A client will dial the child's own listener (fd 6) and present `ticket` (one use, for 30 s):
 * the child then reads its input from that connection (`input`), and writes its output to it
 * too while it is open (`inout`). `head` (base64) is input to take at once, before any of the
 * connection's bytes (the input header); `end`: the input ends when the connection's input does.
 * @since 0.11.0
 */
export const Connection = Schema.Struct({
  $shardhub: kind("connection"),
  ticket: Schema.String,
  kind: Schema.Literals(["input", "inout"]),
  end: Schema.Boolean,
  head: Schema.String
})

/** What a child is sent. @since 0.6.0 */
export const ToChild = Schema.Union([Stop, Kill, EpochIs, Become, Connection])
/** @since 0.6.0 */
export type ToChild = typeof ToChild.Type

const decodeFromChild = Schema.decodeUnknownOption(FromChild)

/**
 * Whether `value` claims to be a control message (it has the `$shardhub` key).
 *
 * @since 0.6.0
 */
export const isControl = (value: unknown): value is { readonly $shardhub: unknown } =>
  typeof value === "object" && value !== null && "$shardhub" in value

/**
 * The control message `value` is, or `undefined` when it is none (the user's message, or a
 * `$shardhub` message that does not follow the protocol).
 *
 * @since 0.6.0
 */
export const fromChild = (value: unknown): FromChild | undefined => {
  if (!isControl(value)) return undefined
  const decoded = decodeFromChild(value)
  return decoded._tag === "Some" ? decoded.value : undefined
}
