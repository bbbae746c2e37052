/**
 * What to run: the schema of a process spec, and its defaults.
 *
 * A spec is plain data (it travels inside instance specs and over the wire). Durations are in
 * milliseconds, sizes in MB. {@link resolve} fills in every default once, so the rest of the
 * manager never reads an optional field.
 *
 * @since 0.2.0
 */
import { Schema } from "effect"

/**
 * How messages are framed on the channel: newline-delimited JSON, or a 4-byte big-endian
 * length followed by MessagePack.
 *
 * @since 0.2.0
 */
export const MessageCodec = Schema.Literals(["ndjson", "msgpack"])
/** @since 0.2.0 */
export type MessageCodec = typeof MessageCodec.Type

const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const PositiveInt = Schema.Int.check(Schema.isGreaterThan(0))
const Port = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 65535 }))

/**
 * The child's environment: the runner's own (unless `inherit: false`) without what is
 * {@link withheld} (unless named in `pass`), minus `remove`, plus `set`.
 *
 * @since 0.2.0
 */
export const EnvSpec = Schema.Struct({
  inherit: Schema.optionalKey(Schema.Boolean),
  set: Schema.optionalKey(Schema.Record(Schema.String, Schema.String)),
  remove: Schema.optionalKey(Schema.Array(Schema.String)),
  /** Runner variables passed on although they are withheld by default (e.g. `DATABASE_URL`). */
  pass: Schema.optionalKey(Schema.Array(Schema.String))
})

/**
 * Whether a runner variable is kept from children unless their spec passes it by name: the
 * store's address and password (`DATABASE_URL`, libpq's `PG*`), shardhub's own settings and
 * credentials (`SHARDHUB_*`, e.g. the gateway token), and npm's run-script settings (`npm_*`,
 * which carry registry tokens when shardhub is started by `npm start`).
 *
 * @since 0.5.0
 */
export const withheld = (name: string) =>
  name === "DATABASE_URL" || name.startsWith("SHARDHUB_") || name.startsWith("PG") || name.startsWith("npm_")

/**
 * Resource limits of a child (soft and hard): processes of its user (`nproc`), open files
 * (`nofile`), core file bytes (`core`, 0 for none).
 *
 * @since 0.5.0
 */
export const Rlimits = Schema.Struct({
  nproc: Schema.optionalKey(NonNegativeInt),
  nofile: Schema.optionalKey(NonNegativeInt),
  core: Schema.optionalKey(NonNegativeInt)
})
/** @since 0.5.0 */
export type Rlimits = typeof Rlimits.Type

/**
 * When an ended process is started again. Restarts within `windowMs` are counted; past
 * `maxRestarts` the process fails with `RestartLimitReached`. The delay before a restart grows
 * from `backoffMs` by `backoffFactor` up to `backoffMaxMs`, and falls back to `backoffMs` after
 * a run that lasted at least `minUptimeMs`.
 *
 * @since 0.2.0
 */
export const RestartPolicy = Schema.Struct({
  mode: Schema.Literals(["never", "on-failure", "always"]),
  maxRestarts: Schema.optionalKey(NonNegativeInt),
  windowMs: Schema.optionalKey(PositiveInt),
  backoffMs: Schema.optionalKey(NonNegativeInt),
  backoffMaxMs: Schema.optionalKey(NonNegativeInt),
  backoffFactor: Schema.optionalKey(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(1))),
  minUptimeMs: Schema.optionalKey(NonNegativeInt)
})
/** @since 0.2.0 */
export type RestartPolicy = typeof RestartPolicy.Type

/**
 * A check of a running process from outside: a TCP connect, an HTTP GET that must answer 2xx
 * (on `host`, default 127.0.0.1; `path` default `/`), or a command that must exit 0 (run with
 * the process's user, working directory and environment).
 *
 * @since 0.9.0
 */
export const Check = Schema.Union([
  Schema.TaggedStruct("Tcp", { port: Port, host: Schema.optionalKey(Schema.NonEmptyString) }),
  Schema.TaggedStruct("Http", {
    port: Port,
    host: Schema.optionalKey(Schema.NonEmptyString),
    path: Schema.optionalKey(Schema.String.check(Schema.isPattern(/^\/[\x21-\x7e]*$/)))
  }),
  Schema.TaggedStruct("Exec", { command: Schema.NonEmptyString, args: Schema.optionalKey(Schema.Array(Schema.String)) })
])
/** @since 0.9.0 */
export type Check = typeof Check.Type

/**
 * When a process counts as ready: at once; when it sends `{"$shardhub":"ready"}` (or Node's
 * `process.send("ready")`, as PM2's `wait_ready`) on its message channel; or when a
 * {@link Check} passes, tried every `intervalMs` (default 250). Not ready within `timeoutMs`,
 * the run is killed with `ReadyTimeout` (and restarted by its policy).
 *
 * @since 0.2.0
 */
export const Readiness = Schema.Union([
  Schema.TaggedStruct("Immediate", {}),
  Schema.TaggedStruct("Message", { timeoutMs: PositiveInt }),
  Schema.TaggedStruct("Check", { check: Check, timeoutMs: PositiveInt, intervalMs: Schema.optionalKey(PositiveInt) })
])
/** @since 0.2.0 */
export type Readiness = typeof Readiness.Type

/**
 * A check that acts: once the run is ready, `check` is tried every `intervalMs` (default 10 s),
 * each try given `timeoutMs` (default 2 s); after `failures` failed tries in a row (default 3)
 * the run is killed with `LivenessFailed`, and its restart policy decides what comes next.
 *
 * @since 0.9.0
 */
export const Liveness = Schema.Struct({
  check: Check,
  intervalMs: Schema.optionalKey(PositiveInt),
  timeoutMs: Schema.optionalKey(PositiveInt),
  failures: Schema.optionalKey(PositiveInt)
})
/** @since 0.9.0 */
export type Liveness = typeof Liveness.Type

/**
 * How a graceful stop is asked for: a signal to the process group, or the in-band message
 * `{"$shardhub":"stop","timeoutMs":…}` for children that speak the message channel.
 *
 * @since 0.2.0
 */
export const StopWith = Schema.Literals(["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "message"])
/** @since 0.2.0 */
export type StopWith = typeof StopWith.Type

/**
 * A process to run.
 *
 * @since 0.2.0
 */
export const ProcessSpec = Schema.Struct({
  /** Program to execute (looked up on the child's PATH), or a shell command line with `shell`. */
  command: Schema.NonEmptyString,
  args: Schema.optionalKey(Schema.Array(Schema.String)),
  /** Run `command` through `/bin/sh -c` (never implied). */
  shell: Schema.optionalKey(Schema.Boolean),
  /** A label for humans. */
  name: Schema.optionalKey(Schema.String),
  cwd: Schema.optionalKey(Schema.String),
  env: Schema.optionalKey(EnvSpec),
  /** `pipe` (default): writable through `stdin(id)`; `closed`: the child reads EOF. */
  stdin: Schema.optionalKey(Schema.Literals(["pipe", "closed"])),
  /**
   * Which output streams are also kept as timestamped lines in the log (default both). Leave
   * out a stream that carries binary data: its bytes stay available unchanged either way.
   */
  log: Schema.optionalKey(Schema.Array(Schema.Literals(["stdout", "stderr"]))),
  /** Opens the message channel on fd 3 with this codec. */
  messages: Schema.optionalKey(MessageCodec),
  /**
   * Opens two data pipes beside stdio: fd 4 carries `input` to the child, fd 5 carries its
   * `output` back (for programs whose data stream is not their stdio, like sequences).
   */
  dataChannels: Schema.optionalKey(Schema.Boolean),
  /**
   * The program can be started ahead as a spare (`command args[0] --spare`) and be told the rest
   * of its argv, its environment and directory as one message on its NDJSON message channel
   * (see `Spares`); shardhub's Node in-child runner can. Not for a process started through a
   * shell or with `user`, `group` or `rlimits`.
   */
  prestart: Schema.optionalKey(Schema.Boolean),
  /**
   * Gives the process, beside its data pipes, a TCP socket listening on a free port of
   * 127.0.0.1 at fd 6, bound before it starts and held by it alone: where it can take a client's
   * data connection itself, past the runner (shardhub's Node in-child runner does; see
   * `instance/Direct`). Needs the NDJSON channel and the data pipes.
   */
  listener: Schema.optionalKey(Schema.Boolean),
  stopWith: Schema.optionalKey(StopWith),
  /**
   * The name of its log files (`logs/<logName>.log`; default its process id). A process that
   * reuses a name starts a fresh log, unless `continueLog`. Its log can be read after the
   * process was removed with `keepLogs` (see `ProcessManager.pastLogs`).
   */
  logName: Schema.optionalKey(Schema.String.check(Schema.isPattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/))),
  /** Appends to the files of a reused `logName` (a restart) instead of starting a fresh log. */
  continueLog: Schema.optionalKey(Schema.Boolean),
  /** Keep the data directory after the process ends (default: removed). */
  keepDataDir: Schema.optionalKey(Schema.Boolean),
  /** Resident memory of the whole process tree, in MB; over it the process is killed. */
  memoryLimitMb: Schema.optionalKey(Schema.Finite.check(Schema.isGreaterThan(0))),
  rlimits: Schema.optionalKey(Rlimits),
  /** Run as this user (name or uid; the runner must be root to switch). */
  user: Schema.optionalKey(Schema.NonEmptyString),
  /** Run with this group (name or gid; default the user's own group). */
  group: Schema.optionalKey(Schema.NonEmptyString),
  restart: Schema.optionalKey(RestartPolicy),
  readiness: Schema.optionalKey(Readiness),
  liveness: Schema.optionalKey(Liveness)
})
/** @since 0.2.0 */
export type ProcessSpec = typeof ProcessSpec.Type

/**
 * A spec with every default filled in.
 *
 * @since 0.2.0
 */
export interface ResolvedSpec {
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly shell: boolean
  readonly name: string
  readonly cwd: string | undefined
  readonly env: {
    readonly inherit: boolean
    readonly set: Readonly<Record<string, string>>
    readonly remove: ReadonlyArray<string>
    readonly pass: ReadonlyArray<string>
  }
  readonly stdin: "pipe" | "closed"
  readonly log: { readonly stdout: boolean; readonly stderr: boolean }
  readonly messages: MessageCodec | undefined
  readonly dataChannels: boolean
  readonly prestart: boolean
  readonly listener: boolean
  readonly stopWith: StopWith
  readonly keepDataDir: boolean
  readonly logName: string | undefined
  readonly continueLog: boolean
  readonly memoryLimitBytes: number | undefined
  readonly rlimits: Rlimits
  readonly user: string | undefined
  readonly group: string | undefined
  readonly restart: Required<RestartPolicy>
  readonly readiness: Readiness
  readonly liveness: Required<Liveness> | undefined
}

/**
 * Fills in the defaults: no restarts (10 within 60 s when enabled, backoff 100 ms doubling up to
 * 15 s, 1 s of uptime resets it), ready at once, stop with SIGTERM.
 *
 * @since 0.2.0
 */
export const resolve = (spec: ProcessSpec): ResolvedSpec => ({
  command: spec.command,
  args: spec.args ?? [],
  shell: spec.shell ?? false,
  name: spec.name ?? spec.command,
  cwd: spec.cwd,
  env: { inherit: spec.env?.inherit ?? true, set: spec.env?.set ?? {}, remove: spec.env?.remove ?? [], pass: spec.env?.pass ?? [] },
  stdin: spec.stdin ?? "pipe",
  log: { stdout: spec.log?.includes("stdout") ?? true, stderr: spec.log?.includes("stderr") ?? true },
  messages: spec.messages,
  dataChannels: spec.dataChannels ?? false,
  // Started ahead only as itself (not through a shell or prlimit, not as another user), told the
  // rest on its NDJSON channel.
  prestart: (spec.prestart ?? false) && spec.messages === "ndjson" && !(spec.shell ?? false) &&
    Object.keys(spec.rlimits ?? {}).length === 0 && spec.user === undefined && spec.group === undefined,
  listener: (spec.listener ?? false) && spec.messages === "ndjson" && (spec.dataChannels ?? false),
  stopWith: spec.stopWith ?? "SIGTERM",
  keepDataDir: spec.keepDataDir ?? false,
  logName: spec.logName,
  continueLog: spec.continueLog ?? false,
  memoryLimitBytes: spec.memoryLimitMb === undefined ? undefined : Math.round(spec.memoryLimitMb * 1024 * 1024),
  rlimits: spec.rlimits ?? {},
  user: spec.user,
  group: spec.group,
  restart: {
    mode: spec.restart?.mode ?? "never",
    maxRestarts: spec.restart?.maxRestarts ?? 10,
    windowMs: spec.restart?.windowMs ?? 60_000,
    backoffMs: spec.restart?.backoffMs ?? 100,
    backoffMaxMs: spec.restart?.backoffMaxMs ?? 15_000,
    backoffFactor: spec.restart?.backoffFactor ?? 2,
    minUptimeMs: spec.restart?.minUptimeMs ?? 1_000
  },
  readiness: spec.readiness ?? { _tag: "Immediate" },
  liveness: spec.liveness === undefined ? undefined : {
    check: spec.liveness.check,
    intervalMs: spec.liveness.intervalMs ?? 10_000,
    timeoutMs: spec.liveness.timeoutMs ?? 2_000,
    failures: spec.liveness.failures ?? 3
  }
})

/**
 * Environment variables the manager sets for every child.
 *
 * @since 0.2.0
 */
export const ENV = {
  /** Absolute path of the process' own data directory. */
  dataDir: "SHARDHUB_DATA_DIR",
  /** The managed process id (a UUID). */
  processId: "SHARDHUB_PROCESS_ID",
  /** File descriptor of the message channel (a duplex socket), when `messages` is set. */
  messageFd: "SHARDHUB_MESSAGE_FD",
  /** `ndjson` or `msgpack`. */
  messageCodec: "SHARDHUB_MESSAGE_CODEC",
  /** Marks every descendant of a manager, so that a later incarnation can find leftovers. */
  supervisor: "SHARDHUB_SUPERVISOR"
} as const
