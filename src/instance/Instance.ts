/**
 * The `Instance` entity: its RPCs. One entity per instance id; the runner that holds the
 * entity's shard owns the instance's OS process (see `InstanceEntity` for the behaviour).
 *
 * Delivery: the RPCs are volatile (Effect retries them until the shard has an owner). Start is
 * made idempotent by its `startKey` in the registry, so a start re-sent after a failover never
 * starts a second process; every other RPC is safe to repeat except `SendEvent`.
 *
 * Bulk bytes do not go through these RPCs: `Open` returns a ticket for the owner's
 * {@link DataPort}.
 *
 * @since 0.3.0
 */
import { ClusterSchema, Entity } from "effect/cluster"
import { DeliverAt } from "effect/cluster"
import { DateTime, PrimaryKey, Schema } from "effect"
import { Rpc } from "effect/rpc"
import { LogLine, LogsQuery } from "../process/LogStore.ts"
import { LogsError } from "../process/ProcessErrors.ts"
import { ProcessStats } from "../process/ProcessStatus.ts"
import { Ticket } from "./DataPort.ts"
import {
  InstanceAlreadyExists,
  InstanceNotFound,
  InvalidSpec,
  NotRunning,
  RegistryError,
  StartFailed,
  SignalFailed
} from "./InstanceErrors.ts"
import { ByteStream, Health, InstanceEvent, InstanceInfo, InstanceSpec } from "./InstanceSpec.ts"
import * as Tracing from "../metrics/Tracing.ts"
import { groupOf } from "./Placement.ts"

const known = [InstanceNotFound, RegistryError] as const

/**
 * Starts the instance. `startKey` identifies this start request: repeating it (a retry, a
 * re-delivery) answers with the instance as it is; another start of the same id fails with
 * `InstanceAlreadyExists`. Answers once the process runs.
 *
 * @since 0.3.0
 */
export const Start = Rpc.make("Start", {
  payload: { spec: InstanceSpec, startKey: Schema.String },
  success: InstanceInfo,
  error: Schema.Union([InstanceAlreadyExists, InvalidSpec, StartFailed, RegistryError])
})

/**
 * Stops the instance gracefully: SIGTERM (or the in-band stop message) and SIGKILL after
 * `timeoutMs`. Answers with the final record once the process ended. `canCallKeepalive` lets a
 * sequence extend the stop (sequences only).
 *
 * @since 0.3.0
 */
export const Stop = Rpc.make("Stop", {
  payload: { timeoutMs: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 3_600_000 })), canCallKeepalive: Schema.Boolean },
  success: InstanceInfo,
  error: Schema.Union([...known, SignalFailed])
})

/**
 * Kills the instance (SIGKILL to its process group). `removeImmediately` forgets it at once
 * instead of keeping its record for the retention time.
 *
 * @since 0.3.0
 */
export const Kill = Rpc.make("Kill", {
  payload: { removeImmediately: Schema.Boolean },
  success: InstanceInfo,
  error: Schema.Union([...known, SignalFailed])
})

/**
 * Restarts the instance: its process is stopped gracefully (SIGKILL after `timeoutMs`) if it
 * runs, and a new one is started under the same id, its restart count one up and its log
 * continued. An ended instance is started again. Answers once the new process runs.
 *
 * @since 0.6.0
 */
export const Restart = Rpc.make("Restart", {
  payload: { timeoutMs: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 3_600_000 })) },
  success: InstanceInfo,
  error: Schema.Union([...known, SignalFailed, StartFailed, InvalidSpec])
})

/**
 * When a tick of a scheduled instance is due (ms since the epoch): the message is delivered
 * then, and one tick is stored once (its time is its key).
 *
 * @since 0.9.0
 */
export class TickAt extends Schema.Class<TickAt>("shardhub/Instance/TickAt")({ at: Schema.Number }) {
  [PrimaryKey.symbol]() {
    return String(this.at)
  }
  [DeliverAt.symbol]() {
    return DateTime.fromDateUnsafe(new Date(this.at))
  }
}

/**
 * A tick of a scheduled instance: run the program once (unless a run is still going), and ask
 * for the next tick. Persisted: a tick due while the cluster was down is delivered when it is
 * back.
 *
 * @since 0.9.0
 */
export const Tick = Rpc.make("Tick", { payload: TickAt })
  .annotate(ClusterSchema.Persisted, true)
  .annotate(ClusterSchema.Uninterruptible, true)

/**
 * Wakes a pending instance (no runner met its placement when it was started): persisted, so it
 * waits in the store until a runner that meets the placement takes the instance's shard, and
 * delivering it brings the instance up there (its activation starts what should run).
 *
 * @since 0.10.0
 */
export const Wake = Rpc.make("Wake").annotate(ClusterSchema.Persisted, true)

/**
 * Brings an instance up on the runner that holds its shard (its activation starts what should
 * run): sent there by that runner's `Activator`, not persisted.
 *
 * @since 0.11.0
 */
export const Activate = Rpc.make("Activate")

/** @since 0.3.0 */
export const Info = Rpc.make("Info", { success: InstanceInfo, error: Schema.Union(known) })

/** @since 0.3.0 */
export const GetHealth = Rpc.make("GetHealth", { success: Health, error: Schema.Union(known) })

/** @since 0.3.0 */
export const Stats = Rpc.make("Stats", { success: ProcessStats, error: Schema.Union([...known, NotRunning]) })

/**
 * Sends an event to the process: the message `{"event": name, "data": data}` on its channel.
 *
 * @since 0.3.0
 */
export const SendEvent = Rpc.make("SendEvent", {
  payload: InstanceEvent.fields,
  error: Schema.Union([...known, NotRunning])
})

/**
 * The next event `name` the process emits (waits for it).
 *
 * @since 0.3.0
 */
export const NextEvent = Rpc.make("NextEvent", {
  payload: { name: Schema.String },
  success: InstanceEvent,
  error: Schema.Union([...known, NotRunning])
})

/**
 * The last event `name` the process emitted, or the next one if it never did.
 *
 * @since 0.3.0
 */
export const LastEvent = Rpc.make("LastEvent", {
  payload: { name: Schema.String },
  success: InstanceEvent,
  error: Schema.Union([...known, NotRunning])
})

/**
 * Every event the process emits from now on (only those called `name`, if given). Ends when
 * the process ends.
 *
 * @since 0.3.0
 */
export const Events = Rpc.make("Events", {
  payload: { name: Schema.optionalKey(Schema.String) },
  success: InstanceEvent,
  error: Schema.Union([...known, NotRunning]),
  stream: true
})

/**
 * Log lines of the current process (see `LogsQuery`: streams, since/until, tail, follow).
 *
 * @since 0.3.0
 */
export const Logs = Rpc.make("Logs", {
  payload: { query: LogsQuery },
  success: LogLine,
  error: Schema.Union([...known, NotRunning, LogsError]),
  stream: true
})

/**
 * Opens a byte stream of the process on the owner's data port. Output streams start with what
 * is retained (`replay`, default true) and then go on live; input streams close the process's
 * stdin when the client ends them, unless `end` is false.
 *
 * @since 0.3.0
 */
export const Open = Rpc.make("Open", {
  payload: {
    stream: ByteStream,
    end: Schema.optionalKey(Schema.Boolean),
    replay: Schema.optionalKey(Schema.Boolean),
    /** The content type of a sequence's input (default `application/octet-stream`). */
    contentType: Schema.optionalKey(Schema.String),
    /**
     * `input` and `inout`: let the process take the connection itself, past the runner, where it
     * can (see `Direct`: a Node sequence, a runner on loopback without TLS, the run's first
     * input). Default: yes for `input` (its one reader is the process), no for `inout`: while a
     * direct `inout` is open, its output goes to it alone (no replay, no other reader).
     */
    direct: Schema.optionalKey(Schema.Boolean)
  },
  success: Ticket,
  error: Schema.Union([...known, NotRunning])
})

/**
 * The entity. A call carries its span to the runner (one trace per start) only when traces are
 * collected: it costs otherwise.
 *
 * @since 0.3.0
 */
export const Instance = Entity.make("Instance", [
  Start,
  Stop,
  Kill,
  Restart,
  Tick,
  Wake,
  Activate,
  Info,
  GetHealth,
  Stats,
  SendEvent,
  NextEvent,
  LastEvent,
  Events,
  Logs,
  Open
]).annotate(ClusterSchema.ClientTracingEnabled, Tracing.enabled)
  // A placed instance's entity id names its placement group (see `Placement`).
  .annotate(ClusterSchema.ShardGroup, (entityId) => groupOf(entityId))
