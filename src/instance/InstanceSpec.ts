/**
 * What an instance is and how it stands: the schemas every room shares (the entity, the
 * registry, the clients, the HTTP gateway).
 *
 * An instance runs a **program** — a command, or a stored sequence — under the ProcessManager
 * of whichever runner owns its shard. Its record outlives the process: status, owner, exit and
 * crash log stay readable after the end (like STH's instance info).
 *
 * @since 0.3.0
 */
import { Cron, Result, Schema } from "effect"
import { TopicName } from "../topic/Topic.ts"
import { Placement } from "./Placement.ts"
import { EnvSpec, Liveness, Readiness, RestartPolicy, Rlimits, StopWith } from "../process/ProcessSpec.ts"
import { CrashLog, ProcessStats } from "../process/ProcessStatus.ts"

/**
 * Instance ids: 1–128 characters of letters, digits, `-`, `_` and `.` (UUIDs by default).
 *
 * @since 0.3.0
 */
export const InstanceId = Schema.String.check(Schema.isPattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/))
/** @since 0.3.0 */
export type InstanceId = typeof InstanceId.Type

/**
 * The id of a bundle: the sha256 of its archive, in hex.
 *
 * @since 0.10.0
 */
export const BundleHash = Schema.String.check(Schema.isPattern(/^[0-9a-f]{64}$/))

/**
 * The program of an instance: an OS command, or a sequence from the sequence store.
 *
 * @since 0.3.0
 */
export const Program = Schema.Union([
  Schema.TaggedStruct("Command", {
    command: Schema.NonEmptyString,
    args: Schema.optionalKey(Schema.Array(Schema.String)),
    shell: Schema.optionalKey(Schema.Boolean),
    /** The working directory; with a bundle, relative to the bundle's root (default the root). */
    cwd: Schema.optionalKey(Schema.String),
    /**
     * A bundle from the cluster store (its content hash, see `SequenceStore.addBundle`): the
     * runner that runs the instance unpacks it (once per hash) and runs the command in it, so the
     * command's files move with it on failover and drain.
     */
    bundle: Schema.optionalKey(BundleHash)
  }),
  Schema.TaggedStruct("Sequence", {
    sequenceId: Schema.NonEmptyString,
    args: Schema.optionalKey(Schema.Array(Schema.Unknown)),
    appConfig: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
  })
])
/** @since 0.3.0 */
export type Program = typeof Program.Type

/**
 * A cron expression (5 fields, or 6 with seconds first), in UTC.
 *
 * @since 0.9.0
 */
export const CronExpression = Schema.String.check(
  Schema.makeFilter((text: string) => {
    const parsed = Cron.parse(text)
    return Result.isSuccess(parsed) ? true : `not a cron expression: ${parsed.failure.message}`
  })
)

/**
 * How to run an instance.
 *
 * @since 0.3.0
 */
export const InstanceSpec = Schema.Struct({
  program: Program,
  /** A label for humans. */
  name: Schema.optionalKey(Schema.String),
  /**
   * Labels for tools: up to 32 pairs, keys up to 63 characters, values up to 256 (`shardhub apply`
   * marks what it started with the file and the app).
   */
  labels: Schema.optionalKey(
    Schema.Record(Schema.String, Schema.String.check(Schema.isMaxLength(256))).check(
      Schema.isMaxProperties(32),
      // Checked as a whole: a key check inside the record would drop a long key instead of refusing it.
      Schema.makeFilter((labels: Readonly<Record<string, string>>) => {
        const long = Object.keys(labels).find((key) => key.length > 63)
        return long === undefined ? true : `label key ${JSON.stringify(long.slice(0, 70))}…: keys are at most 63 characters`
      })
    )
  ),
  env: Schema.optionalKey(EnvSpec),
  /** Run only on a runner with every label of `placement.on` (see `Placement`). */
  placement: Schema.optionalKey(Placement),
  /**
   * Memory of the whole process tree (`memoryMb`; over it the process is killed) and rlimits:
   * processes of its user (`nproc`), open files (`nofile`), core file bytes (`core`).
   */
  limits: Schema.optionalKey(Schema.Struct({
    memoryMb: Schema.optionalKey(Schema.Finite.check(Schema.isGreaterThan(0))),
    ...Rlimits.fields
  })),
  /** Run as this user (name or uid) and group (default the user's); needs a root runner. */
  user: Schema.optionalKey(Schema.NonEmptyString),
  /**
   * Give the program the gateway (`SHARDHUB_HUB_URL`) and a credential for it scoped to this
   * instance and to topics (`SHARDHUB_HUB_TOKEN`; STH's `this.hub` sends it): see `HubCredential`.
   */
  hub: Schema.optionalKey(Schema.Boolean),
  group: Schema.optionalKey(Schema.NonEmptyString),
  restart: Schema.optionalKey(RestartPolicy),
  /** Which outputs are kept as log lines (default both). Raw bytes are available either way. */
  log: Schema.optionalKey(Schema.Array(Schema.Literals(["stdout", "stderr"]))),
  /** How a stop is asked for (default SIGTERM to the process group). */
  stopWith: Schema.optionalKey(StopWith),
  /**
   * When a command counts as ready (default at once): its ready message, or a check that
   * passes. Until then its status is `starting`. A sequence is ready when its runner loaded it.
   */
  readiness: Schema.optionalKey(Readiness),
  /** A check that restarts the process (under its restart policy) when it fails in a row. */
  liveness: Schema.optionalKey(Liveness),
  /**
   * Run the program once per tick of `cron` instead of at once: on one runner, never two runs
   * at once (a tick that finds the last run still going is skipped); ticks missed while the
   * cluster was down run once when it is back. Between runs the instance is `scheduled`.
   */
  schedule: Schema.optionalKey(Schema.Struct({ cron: CronExpression })),
  /**
   * Topics: `input` feeds the instance's input from a topic, `output` publishes its output to
   * one; `contentType` types them (default `application/octet-stream`).
   */
  topics: Schema.optionalKey(Schema.Struct({
    input: Schema.optionalKey(TopicName),
    output: Schema.optionalKey(TopicName),
    contentType: Schema.optionalKey(Schema.String)
  }))
})
/** @since 0.3.0 */
export type InstanceSpec = typeof InstanceSpec.Type

/**
 * Where an instance stands (seed 001's states): `pending` while no runner meets its placement
 * (its `reason` says which labels it waits for), `starting` until its process runs and is ready
 * (see `InstanceSpec.readiness`), `running`,
 * `stopping` after a stop or kill was asked for, and at the end `stopped` (asked for, or exited
 * with 0) or `crashed` (anything else); a scheduled instance is `scheduled` between its runs.
 *
 * @since 0.3.0
 */
export const InstanceStatus = Schema.Literals(["pending", "starting", "running", "stopping", "stopped", "crashed", "scheduled"])
/** @since 0.3.0 */
export type InstanceStatus = typeof InstanceStatus.Type

/**
 * What the user asked for: keep it running (restart it on another runner if its runner dies),
 * or let it end.
 *
 * @since 0.3.0
 */
export const Desired = Schema.Literals(["running", "stopped"])
/** @since 0.3.0 */
export type Desired = typeof Desired.Type

/**
 * The durable record of an instance.
 *
 * @since 0.3.0
 */
export const InstanceInfo = Schema.Struct({
  id: InstanceId,
  name: Schema.optionalKey(Schema.String),
  spec: InstanceSpec,
  desired: Desired,
  status: InstanceStatus,
  /** `host:port` of the runner that owns (or last owned) its process. */
  runner: Schema.optionalKey(Schema.String),
  pid: Schema.optionalKey(Schema.Int),
  /** Incremented by every runner that takes the instance over; stale owners are fenced out. */
  epoch: Schema.Int,
  /** Process starts after the first (restart policy or failover). */
  restarts: Schema.Int,
  createdAt: Schema.Number,
  startedAt: Schema.optionalKey(Schema.Number),
  endedAt: Schema.optionalKey(Schema.Number),
  exitCode: Schema.optionalKey(Schema.Int),
  signal: Schema.optionalKey(Schema.String),
  /** Why it ended, when the code or signal alone does not say it. */
  reason: Schema.optionalKey(Schema.String),
  /** When a scheduled instance runs next (ms since the epoch). */
  nextTickAt: Schema.optionalKey(Schema.Number),
  crashLog: CrashLog
})
/** @since 0.3.0 */
export type InstanceInfo = typeof InstanceInfo.Type

/**
 * The statuses of an instance that has not ended.
 *
 * @since 0.7.0
 */
export const liveStatuses: ReadonlyArray<InstanceStatus> = ["pending", "starting", "running", "stopping", "scheduled"]

/**
 * Whether a status is final.
 *
 * @since 0.3.0
 */
export const isEnded = (status: InstanceStatus): boolean => status === "stopped" || status === "crashed"

/**
 * The ids of the instances of sequence `sequenceId` among `instances` that have not ended.
 *
 * @since 0.6.0
 */
export const liveInstancesOf = (instances: ReadonlyArray<InstanceInfo>, sequenceId: string): Array<string> =>
  instances
    .filter((info) =>
      info.spec.program._tag === "Sequence" && info.spec.program.sequenceId === sequenceId && !isEnded(info.status)
    )
    .map((info) => info.id)

/**
 * How an instance is doing right now: its status, whether it is healthy (running, and not
 * restarting), and what its process tree uses.
 *
 * @since 0.3.0
 */
export const Health = Schema.Struct({
  id: InstanceId,
  status: InstanceStatus,
  healthy: Schema.Boolean,
  runner: Schema.optionalKey(Schema.String),
  pid: Schema.optionalKey(Schema.Int),
  uptimeMs: Schema.optionalKey(Schema.Number),
  restarts: Schema.Int,
  stats: Schema.optionalKey(ProcessStats)
})
/** @since 0.3.0 */
export type Health = typeof Health.Type

/**
 * A named event, sent to an instance or emitted by it. On the process's message channel an
 * event is the message `{"event": name, "data": data}`.
 *
 * @since 0.3.0
 */
export const InstanceEvent = Schema.Struct({
  name: Schema.String,
  data: Schema.Unknown
})
/** @since 0.3.0 */
export type InstanceEvent = typeof InstanceEvent.Type

/**
 * The byte streams of an instance. For a command, `input` is its stdin and `output` its
 * stdout; `inout` writes `input` and reads `output` on one connection.
 *
 * @since 0.3.0
 */
export const ByteStream = Schema.Literals(["stdin", "input", "stdout", "stderr", "output", "inout"])
/** @since 0.3.0 */
export type ByteStream = typeof ByteStream.Type
