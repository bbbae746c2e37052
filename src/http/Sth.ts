/**
 * STH's `/api/v1` shapes — what `@scramjet/api-client` and `si` read — and the conversions from
 * shardhub's records. Where the 0.26.1 client and the 1.0.1 hub disagree, both are accepted
 * (stop/kill/event bodies as `[code, {…}]` arrays or plain objects).
 *
 * @since 0.4.0
 */
import { Schema } from "effect"
import type { InstanceEvent, InstanceInfo, InstanceStatus } from "../instance/InstanceSpec.ts"
import { Rlimits } from "../process/ProcessSpec.ts"
import type { SequenceInfo } from "../sequence/SequenceStore.ts"

/** STH's message codes in the array bodies of `_stop`, `_kill` and `_event`. */
const codes = { stop: 4001, kill: 4002, monitoringRate: 4003, event: 5001 } as const

/** `[code, body]` or `body`. */
const messageBody = <S extends Schema.Top>(code: number, body: S) =>
  Schema.Union([body, Schema.Tuple([Schema.Literal(code), body])])

/**
 * `_stop`: `{timeout, canCallKeepalive}` (1.0.1) or `[4001, {…}]` (client 0.26.1).
 *
 * @since 0.4.0
 */
export const StopBody = messageBody(
  codes.stop,
  Schema.Struct({
    timeout: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 3_600_000 }))),
    canCallKeepalive: Schema.optionalKey(Schema.Boolean)
  })
)

/**
 * `_kill`: `{removeImmediately}` or `[4002, {…}]`.
 *
 * @since 0.4.0
 */
export const KillBody = messageBody(
  codes.kill,
  Schema.Struct({ removeImmediately: Schema.optionalKey(Schema.Boolean) })
)

/**
 * `_event`: `[5001, {eventName, message}]` (both STH versions) or `{eventName, message}`.
 *
 * @since 0.4.0
 */
export const EventBody = messageBody(
  codes.event,
  Schema.Struct({ eventName: Schema.NonEmptyString, message: Schema.optionalKey(Schema.Unknown) })
)

/** The object of a `[code, object]` or plain-object body. */
export const unwrap = <A>(body: A | readonly [number, A]): A => Array.isArray(body) ? body[1] as A : body as A

/**
 * `POST /sequence/:id/start`.
 *
 * @since 0.4.0
 */
export const StartBody = Schema.Struct({
  appConfig: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown)),
  args: Schema.optionalKey(Schema.Array(Schema.Unknown)),
  instanceId: Schema.optionalKey(Schema.String),
  inputTopic: Schema.optionalKey(Schema.String),
  outputTopic: Schema.optionalKey(Schema.String),
  limits: Schema.optionalKey(Schema.Struct({
    memory: Schema.optionalKey(Schema.Number),
    gpu: Schema.optionalKey(Schema.Boolean),
    ...Rlimits.fields
  })),
  /** shardhub's own: run as this user and group (the runner must be root). */
  user: Schema.optionalKey(Schema.NonEmptyString),
  group: Schema.optionalKey(Schema.NonEmptyString)
})

/** @since 0.4.0 */
export type StartBody = typeof StartBody.Type

/** @since 0.4.0 */
export const Version = Schema.Struct({
  service: Schema.String,
  apiVersion: Schema.String,
  version: Schema.String,
  build: Schema.String
})

/** @since 0.4.0 */
export const LoadCheck = Schema.Struct({
  avgLoad: Schema.Number,
  currentLoad: Schema.Number,
  memFree: Schema.Number,
  memUsed: Schema.Number,
  fsSize: Schema.Array(Schema.Unknown)
})

/**
 * A sequence as STH describes it, with shardhub's own fields beside.
 *
 * @since 0.4.0
 */
export const Sequence = Schema.Struct({
  id: Schema.String,
  name: Schema.optionalKey(Schema.String),
  location: Schema.String,
  config: Schema.Struct({
    type: Schema.String,
    id: Schema.String,
    name: Schema.optionalKey(Schema.String),
    version: Schema.optionalKey(Schema.String),
    engines: Schema.Record(Schema.String, Schema.String),
    entrypointPath: Schema.String,
    language: Schema.String,
    args: Schema.Array(Schema.Unknown)
  }),
  instances: Schema.Array(Schema.String),
  hash: Schema.String,
  size: Schema.Number,
  created: Schema.String
})

/** @since 0.4.0 */
export const toSequence = (info: SequenceInfo, instances: ReadonlyArray<string>): typeof Sequence.Type => ({
  id: info.id,
  ...(info.name === undefined ? {} : { name: info.name }),
  location: "shardhub",
  config: {
    type: "process",
    id: info.id,
    ...(info.name === undefined ? {} : { name: info.name }),
    ...(info.version === undefined ? {} : { version: info.version }),
    engines: { [info.engine]: "*" },
    entrypointPath: info.main,
    language: info.engine === "node" ? "js" : "py",
    args: info.args
  },
  instances,
  hash: info.hash,
  size: info.size,
  created: new Date(info.createdAt).toISOString()
})

/**
 * STH's instance statuses: `completed` for a clean end, `errored` for a crash.
 *
 * @since 0.4.0
 */
export const sthStatus = (status: InstanceStatus): string =>
  status === "stopped" ? "completed" : status === "crashed" ? "errored" : status

/**
 * An instance as STH describes it (`GET /instance/:id`, `GET /instances`), with shardhub's own
 * fields beside.
 *
 * @since 0.4.0
 */
export const Instance = Schema.Struct({
  id: Schema.String,
  name: Schema.optionalKey(Schema.String),
  status: Schema.String,
  sequence: Schema.optionalKey(Schema.Struct({ id: Schema.String })),
  command: Schema.optionalKey(Schema.Array(Schema.String)),
  appConfig: Schema.Record(Schema.String, Schema.Unknown),
  args: Schema.Array(Schema.Unknown),
  ports: Schema.Record(Schema.String, Schema.Unknown),
  created: Schema.String,
  started: Schema.optionalKey(Schema.String),
  ended: Schema.optionalKey(Schema.String),
  terminated: Schema.optionalKey(Schema.Struct({ exitcode: Schema.NullOr(Schema.Int), reason: Schema.String })),
  runner: Schema.optionalKey(Schema.String),
  pid: Schema.optionalKey(Schema.Int),
  restarts: Schema.Int
})

const iso = (ms: number | undefined) => ms === undefined ? undefined : new Date(ms).toISOString()

/** @since 0.4.0 */
export const toInstance = (info: InstanceInfo): typeof Instance.Type => {
  const program = info.spec.program
  const started = iso(info.startedAt)
  const ended = iso(info.endedAt)
  const reason = info.reason ??
    (info.exitCode === 137 || info.signal === "SIGKILL" ? "Instance killed" : info.exitCode === 138 ? "Instance stopped" : undefined)
  return {
    id: info.id,
    ...(info.name === undefined ? {} : { name: info.name }),
    status: sthStatus(info.status),
    ...(program._tag === "Sequence"
      ? { sequence: { id: program.sequenceId } }
      : { command: [program.command, ...(program.args ?? [])] }),
    appConfig: program._tag === "Sequence" ? program.appConfig ?? {} : {},
    args: program.args ?? [],
    ports: {},
    created: new Date(info.createdAt).toISOString(),
    ...(started === undefined ? {} : { started }),
    ...(ended === undefined ? {} : { ended }),
    ...(info.status === "stopped" || info.status === "crashed"
      ? {
        terminated: {
          exitcode: info.exitCode ?? null,
          reason: reason ?? (info.signal === undefined ? `exited with ${info.exitCode}` : `ended by ${info.signal}`)
        }
      }
      : {}),
    ...(info.runner === undefined ? {} : { runner: info.runner }),
    ...(info.pid === undefined ? {} : { pid: info.pid }),
    restarts: info.restarts
  }
}

/**
 * An event as `once`, `event` and `events` answer it (STH 0.18.7's shape: it names the event).
 *
 * @since 0.4.0
 */
export const Event = Schema.Struct({ eventName: Schema.String, message: Schema.Unknown })

/** @since 0.4.0 */
export const toEvent = (event: InstanceEvent): typeof Event.Type => ({ eventName: event.name, message: event.data })

/**
 * `GET /instance/:id/health`: STH's `{healthy, processId}` and shardhub's status and stats.
 *
 * @since 0.4.0
 */
export const Health = Schema.Struct({
  healthy: Schema.Boolean,
  processId: Schema.optionalKey(Schema.Int),
  status: Schema.String,
  runner: Schema.optionalKey(Schema.String),
  uptimeMs: Schema.optionalKey(Schema.Number),
  restarts: Schema.Int,
  cpuPercent: Schema.optionalKey(Schema.Number),
  rssBytes: Schema.optionalKey(Schema.Number)
})

/**
 * `GET /config`: what a client may know of the hub's setup (no secrets).
 *
 * @since 0.6.0
 */
export const HostConfig = Schema.Struct({
  service: Schema.String,
  version: Schema.String,
  apiBase: Schema.String,
  runtimeAdapter: Schema.String,
  /** The largest sequence package `POST /sequence` takes, in bytes. */
  maxPackageBytes: Schema.Number
})

/**
 * `GET /status`: STH reports its connection to a Manager (CPM); shardhub has none, and adds its
 * runners.
 *
 * @since 0.6.0
 */
export const HostStatus = Schema.Struct({
  cpm: Schema.Struct({ connected: Schema.Boolean }),
  runners: Schema.Struct({ total: Schema.Int, healthy: Schema.Int })
})

/** @since 0.6.0 */
export const Entities = Schema.Struct({ sequences: Schema.Array(Sequence), instances: Schema.Array(Instance) })

/** @since 0.6.0 */
export const TopicInfo = Schema.Struct({
  topic: Schema.String,
  topicName: Schema.String,
  contentType: Schema.String,
  localProvider: Schema.String
})

/**
 * `POST /topics`.
 *
 * @since 0.6.0
 */
export const CreateTopicBody = Schema.Struct({
  id: Schema.String,
  "content-type": Schema.optionalKey(Schema.String),
  /** shardhub's: keep the topic's chunks in the cluster store until every consumer has them. */
  durable: Schema.optionalKey(Schema.Boolean)
})

/** @since 0.6.0 */
export const CreatedTopic = Schema.Struct({
  id: Schema.String,
  origin: Schema.Struct({ id: Schema.String, type: Schema.String }),
  state: Schema.String,
  contentType: Schema.String,
  durable: Schema.Boolean
})

/**
 * `POST /instance/:id/_monitoring_rate`: `[4003, {monitoringRate}]` (messages per second), or
 * the object alone.
 *
 * @since 0.6.0
 */
export const MonitoringRateBody = messageBody(codes.monitoringRate, Schema.Struct({ monitoringRate: Schema.Finite.check(Schema.isGreaterThan(0)) }))
