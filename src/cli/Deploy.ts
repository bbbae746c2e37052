/**
 * Deploying services: the keys that say when a copy is ready and healthy and how it is
 * restarted (flags of `shardhub run`, keys of an ecosystem app, PM2's restart keys), and
 * `shardhub reload`, which replaces copies a few at a time (see `client/Rollout.ts`).
 *
 * Checks are written as one word: `message` (the program says it is ready: PM2's
 * `process.send("ready")`, or `{"$shardhub":"ready"}` on its message channel), `tcp:PORT`
 * (`tcp:HOST:PORT`), `http:PORT/PATH` (`http://HOST:PORT/PATH`), `exec:COMMAND ARGS…`.
 *
 * @since 0.9.0
 */
import { Effect, Option, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Rollout from "../client/Rollout.ts"
import { CronExpression, type InstanceSpec } from "../instance/InstanceSpec.ts"
import { Check, type Liveness, RestartPolicy } from "../process/ProcessSpec.ts"
import * as Format from "./Format.ts"
import { CliFailure, json, print, splitWords, withClient } from "./Support.ts"
import { isLabelKey, meets, parseLabels, requirementKey } from "../base/Labels.ts"
import { HostClient } from "../client/HostClient.ts"

/**
 * What says when a copy is ready and healthy and how it restarts, whoever gave it (flags or an
 * ecosystem file). Durations in ms.
 *
 * @since 0.9.0
 */
export interface DeployKeys {
  readonly ready?: string | undefined
  readonly readyTimeoutMs?: number | undefined
  readonly health?: string | undefined
  readonly healthIntervalMs?: number | undefined
  readonly healthTimeoutMs?: number | undefined
  readonly healthFailures?: number | undefined
  readonly restart?: "never" | "on-failure" | "always" | undefined
  readonly maxRestarts?: number | undefined
  readonly minUptimeMs?: number | undefined
  readonly restartDelayMs?: number | undefined
  readonly expBackoffRestartDelayMs?: number | undefined
}

/** Default time a program has to say it is ready (PM2's `listen_timeout` is 3 s; servers take longer). */
const READY_TIMEOUT_MS = 30_000

const invalid = (field: string, given: unknown, expected: string) =>
  new CliFailure({ message: `${field} ${JSON.stringify(given)}: ${expected}` })

const CHECK_FORMS = "expected tcp:PORT, tcp:HOST:PORT, http:PORT/PATH, http://HOST:PORT/PATH or exec:COMMAND"

/**
 * A check written as one word (see the module's doc), or why not, naming `field`.
 *
 * @since 0.9.0
 */
export const parseCheck = (field: string, text: string): Effect.Effect<Check, CliFailure> => {
  const colon = text.indexOf(":")
  const kind = colon < 0 ? text : text.slice(0, colon)
  const rest = colon < 0 ? "" : text.slice(colon + 1)
  let check: unknown
  if (kind === "tcp") {
    const parts = rest.split(":")
    check = parts.length === 1 ? { _tag: "Tcp", port: Number(parts[0]) } : { _tag: "Tcp", host: parts.slice(0, -1).join(":"), port: Number(parts.at(-1)) }
  } else if (kind === "http" && rest.startsWith("//")) {
    const url = URL.canParse(text) ? new URL(text) : undefined
    if (url === undefined) return Effect.fail(invalid(field, text, "not a URL"))
    check = { _tag: "Http", host: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port || 80), path: `${url.pathname}${url.search}` }
  } else if (kind === "http") {
    const slash = rest.indexOf("/")
    check = { _tag: "Http", port: Number(slash < 0 ? rest : rest.slice(0, slash)), ...(slash < 0 ? {} : { path: rest.slice(slash) }) }
  } else if (kind === "exec") {
    const [command, ...args] = splitWords(rest)
    check = { _tag: "Exec", command: command ?? "", ...(args.length === 0 ? {} : { args }) }
  } else {
    return Effect.fail(invalid(field, text, `unknown kind ${JSON.stringify(kind)}; ${CHECK_FORMS}`))
  }
  return Schema.decodeUnknownEffect(Check)(check).pipe(
    Effect.mapError(() =>
      invalid(field, text, kind === "exec" ? "expected exec:COMMAND ARGS…" : `a port is 1–65535 and a path starts with /; ${CHECK_FORMS}`)
    )
  )
}

/**
 * A cron expression as a schedule takes it, or why not, naming `field`.
 *
 * @since 0.9.0
 */
export const checkCron = (field: string, text: string) =>
  Schema.decodeUnknownEffect(CronExpression)(text).pipe(
    Effect.mapError(() => invalid(field, text, "expected a cron expression of 5 fields (minute hour day month weekday), or 6 with seconds first")),
    Effect.asVoid
  )

/** A whole number of at least `minimum`, or why not. */
const whole = (field: string, value: number | undefined, minimum: number) =>
  value === undefined || (Number.isInteger(value) && value >= minimum)
    ? Effect.succeed(value)
    : Effect.fail(invalid(field, value, `expected a whole number of at least ${minimum}`))

/**
 * The readiness, liveness and restart policy `keys` ask for; `field` names a key as its giver
 * wrote it (a flag or an ecosystem key) for the error that names it.
 *
 * @since 0.9.0
 */
export const deploySpec = (keys: DeployKeys, field: (key: keyof DeployKeys) => string) =>
  Effect.gen(function*() {
    const spec: { -readonly [K in "readiness" | "liveness" | "restart"]?: InstanceSpec[K] } = {}
    const readyTimeoutMs = (yield* whole(field("readyTimeoutMs"), keys.readyTimeoutMs, 1)) ?? READY_TIMEOUT_MS
    if (keys.ready !== undefined) {
      spec.readiness = keys.ready === "message"
        ? { _tag: "Message", timeoutMs: readyTimeoutMs }
        : { _tag: "Check", check: yield* parseCheck(field("ready"), keys.ready), timeoutMs: readyTimeoutMs }
    } else if (keys.readyTimeoutMs !== undefined) {
      return yield* new CliFailure({ message: `${field("readyTimeoutMs")} is the time to be ready: give ${field("ready")} too` })
    }
    const intervalMs = yield* whole(field("healthIntervalMs"), keys.healthIntervalMs, 1)
    const timeoutMs = yield* whole(field("healthTimeoutMs"), keys.healthTimeoutMs, 1)
    const failures = yield* whole(field("healthFailures"), keys.healthFailures, 1)
    if (keys.health !== undefined) {
      const liveness: Liveness = {
        check: yield* parseCheck(field("health"), keys.health),
        ...(intervalMs === undefined ? {} : { intervalMs }),
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
        ...(failures === undefined ? {} : { failures })
      }
      spec.liveness = liveness
    } else if (intervalMs !== undefined || timeoutMs !== undefined || failures !== undefined) {
      return yield* new CliFailure({ message: `${field("healthIntervalMs")} and its kin tune a health check: give ${field("health")} too` })
    }
    const maxRestarts = yield* whole(field("maxRestarts"), keys.maxRestarts, 0)
    const minUptimeMs = yield* whole(field("minUptimeMs"), keys.minUptimeMs, 0)
    const restartDelayMs = yield* whole(field("restartDelayMs"), keys.restartDelayMs, 0)
    const expBackoffMs = yield* whole(field("expBackoffRestartDelayMs"), keys.expBackoffRestartDelayMs, 1)
    const tuned = maxRestarts !== undefined || minUptimeMs !== undefined || restartDelayMs !== undefined || expBackoffMs !== undefined
    if (keys.restart !== undefined || tuned) {
      // PM2 restarts by default: a restart key without a mode means `always`.
      spec.restart = yield* Schema.decodeUnknownEffect(RestartPolicy)({
        mode: keys.restart ?? "always",
        ...(maxRestarts === undefined ? {} : { maxRestarts }),
        ...(minUptimeMs === undefined ? {} : { minUptimeMs }),
        // PM2's restart_delay is a fixed delay; exp_backoff_restart_delay grows by 1.5 up to 15 s.
        ...(restartDelayMs === undefined ? {} : { backoffMs: restartDelayMs, backoffFactor: 1 }),
        ...(expBackoffMs === undefined ? {} : { backoffMs: expBackoffMs, backoffFactor: 1.5, backoffMaxMs: 15_000 })
      }).pipe(Effect.mapError((error) => new CliFailure({ message: `${field("restart")}: ${error.message}` })))
    }
    return spec
  })

/**
 * The flags of `shardhub run` for {@link DeployKeys}.
 *
 * @since 0.9.0
 */
export const deployFlags = {
  ready: Flag.String("ready").pipe(
    Flag.withDescription("When the program is ready: message (process.send('ready')), tcp:PORT, http:PORT/PATH or exec:COMMAND; status is starting until then"),
    Flag.optional
  ),
  readyTimeout: Flag.Int("ready-timeout").pipe(Flag.withDescription(`ms to be ready, else restarted by its policy (default ${READY_TIMEOUT_MS})`), Flag.optional),
  health: Flag.String("health").pipe(
    Flag.withDescription("A liveness check (tcp:PORT, http:PORT/PATH, exec:COMMAND): failing --health-failures times in a row restarts it"),
    Flag.optional
  ),
  healthInterval: Flag.Int("health-interval").pipe(Flag.withDescription("ms between health checks (default 10000)"), Flag.optional),
  healthTimeout: Flag.Int("health-timeout").pipe(Flag.withDescription("ms a health check may take (default 2000)"), Flag.optional),
  healthFailures: Flag.Int("health-failures").pipe(Flag.withDescription("Failed checks in a row that restart it (default 3)"), Flag.optional),
  maxRestarts: Flag.Int("max-restarts").pipe(Flag.withDescription("Restarts within a minute before it is given up (default 10)"), Flag.optional),
  minUptime: Flag.Int("min-uptime").pipe(Flag.withDescription("ms of uptime after which the restart delay starts over (default 1000)"), Flag.optional),
  restartDelay: Flag.Int("restart-delay").pipe(Flag.withDescription("A fixed ms delay before each restart"), Flag.optional),
  expBackoffRestartDelay: Flag.Int("exp-backoff-restart-delay").pipe(
    Flag.withDescription("A first ms delay before a restart, growing 1.5× per restart up to 15 s"),
    Flag.optional
  )
}

type DeployFlags = { readonly [K in keyof typeof deployFlags]: Option.Option<K extends "ready" | "health" ? string : number> }

/**
 * The {@link DeployKeys} of `run`'s flags, named as flags in errors.
 *
 * @since 0.9.0
 */
export const deployFromFlags = (flags: DeployFlags, restart: Option.Option<"never" | "on-failure" | "always">) =>
  deploySpec({
    ready: Option.getOrUndefined(flags.ready),
    readyTimeoutMs: Option.getOrUndefined(flags.readyTimeout),
    health: Option.getOrUndefined(flags.health),
    healthIntervalMs: Option.getOrUndefined(flags.healthInterval),
    healthTimeoutMs: Option.getOrUndefined(flags.healthTimeout),
    healthFailures: Option.getOrUndefined(flags.healthFailures),
    restart: Option.getOrUndefined(restart),
    maxRestarts: Option.getOrUndefined(flags.maxRestarts),
    minUptimeMs: Option.getOrUndefined(flags.minUptime),
    restartDelayMs: Option.getOrUndefined(flags.restartDelay),
    expBackoffRestartDelayMs: Option.getOrUndefined(flags.expBackoffRestartDelay)
  }, (key) => `--${flagNames[key]}`)

const flagNames: Record<keyof DeployKeys, string> = {
  ready: "ready",
  readyTimeoutMs: "ready-timeout",
  health: "health",
  healthIntervalMs: "health-interval",
  healthTimeoutMs: "health-timeout",
  healthFailures: "health-failures",
  restart: "restart",
  maxRestarts: "max-restarts",
  minUptimeMs: "min-uptime",
  restartDelayMs: "restart-delay",
  expBackoffRestartDelayMs: "exp-backoff-restart-delay"
}

/**
 * The flags of a rollout (`reload`, `apply`).
 *
 * @since 0.9.0
 */
export const rolloutFlags = {
  parallel: Flag.Int("parallel").pipe(Flag.withDescription("Copies replaced at once (default 1)"), Flag.withDefault(1)),
  minHealthy: Flag.Int("min-healthy").pipe(
    Flag.withDescription("ms a new copy must stay running, unrestarted, before the next is replaced (default 0)"),
    Flag.withDefault(0)
  ),
  noRevert: Flag.Boolean("no-revert").pipe(Flag.withDescription("Keep going when a new copy fails, instead of putting the old ones back"), Flag.withDefault(false)),
  surge: Flag.Boolean("surge").pipe(Flag.withDescription("Start each new copy before its old one stops"), Flag.withDefault(false))
}

/**
 * Rollout options from {@link rolloutFlags}, checked.
 *
 * @since 0.9.0
 */
export const rolloutOptions = (flags: { readonly parallel: number; readonly minHealthy: number; readonly noRevert: boolean; readonly surge: boolean }, stopTimeoutMs: number) =>
  flags.parallel < 1
    ? Effect.fail(invalid("--parallel", flags.parallel, "expected at least 1"))
    : flags.minHealthy < 0
    ? Effect.fail(invalid("--min-healthy", flags.minHealthy, "expected 0 or more"))
    : Effect.succeed({ parallel: flags.parallel, minHealthyMs: flags.minHealthy, revert: !flags.noRevert, surge: flags.surge, stopTimeoutMs } satisfies Rollout.Options)

/**
 * A rollout's progress as lines (or JSON lines).
 *
 * @since 0.9.0
 */
export const progressLine = (asJson: boolean) => (event: Rollout.Event) =>
  print(asJson ? Format.jsonLine(event) : describe(event))

const describe = (event: Rollout.Event) => {
  switch (event._tag) {
    case "Stopped":
      return `- ${event.name} stopped ${event.id}`
    case "Started":
      return `+ ${event.name} started ${event.id}`
    case "Ready":
      return `= ${event.name} ready ${event.id}`
    case "Failed":
      return `! ${event.name} failed ${event.id}: ${event.reason}`
    case "Reverted":
      return `< ${event.name} put back${event.id === undefined ? "" : ` ${event.id}`}`
  }
}

/**
 * How a rollout ended, as the CLI says it: a line, and a failure when it did not succeed.
 *
 * @since 0.9.0
 */
export const finish = (report: Rollout.Report, asJson: boolean, quiet = false) =>
  Effect.gen(function*() {
    if (report.ok && quiet) return
    if (asJson) yield* print(Format.jsonLine(report))
    if (report.ok) return asJson ? undefined : yield* print(`replaced ${report.replaced.length}`)
    return yield* new CliFailure({
      message: `rollout stopped: ${report.failed.map((f) => `${f.name}: ${f.reason}`).join("; ")}${
        report.reverted ? " (the old copies were put back)" : ""
      }`
    })
  })

const reload = Command.make("reload", {
  target: Argument.String("target").pipe(Argument.withDescription("An app's name, an instance's id or name, or all")),
  timeout: Flag.Int("timeout").pipe(Flag.withDescription("ms an old copy gets to stop before SIGKILL (default 10000)"), Flag.withDefault(10_000)),
  ...rolloutFlags,
  json
}, (flags) =>
  Effect.gen(function*() {
    const options = yield* rolloutOptions(flags, flags.timeout)
    const targets = yield* Rollout.targets(flags.target)
    const report = yield* Rollout.rollout(Rollout.again(targets), options, progressLine(flags.json))
    yield* finish(report, flags.json)
  })).pipe(
    Command.withDescription(
      "Replace copies a few at a time, each new one ready before the next old one stops; a copy that fails puts the old ones back"
    ),
    withClient
  )

/** @since 0.9.0 */
export const deployCommands = [reload]

/** `--on` and `--spread`. */
export const placementFlags = {
  on: Flag.String("on").pipe(
    Flag.withDescription("Run only on a runner with this label, key=value (shardhub runner --label); repeatable"),
    Flag.atLeast(0)
  ),
  spread: Flag.String("spread").pipe(
    Flag.withDescription("Spread the copies over the values of this runner label (e.g. zone), one value per copy in turn"),
    Flag.optional
  )
}

/**
 * The placement of each of `copies` copies: `on`, and with `spread`, a value of that label per
 * copy in turn (the values live runners that meet `on` carry). One clear line for bad input.
 *
 * @since 0.10.0
 */
export const placements = (words: ReadonlyArray<string>, spread: string | undefined, copies: number, field = { on: "--on", spread: "--spread" }) =>
  Effect.gen(function*() {
    const on = parseLabels(words)
    if (typeof on === "string") return yield* new CliFailure({ message: `${field.on}: ${on}` })
    if (spread === undefined) return Array.from({ length: copies }, () => Object.keys(on).length === 0 ? {} : { placement: { on } })
    if (!isLabelKey(spread)) return yield* new CliFailure({ message: `${field.spread} ${JSON.stringify(spread)}: not a label key` })
    if (spread in on) return yield* new CliFailure({ message: `${field.spread} ${spread}: ${field.on} already fixes it` })
    const runners = yield* (yield* HostClient).runners.pipe(Effect.mapError((error) => new CliFailure({ message: error.message })))
    const values = [...new Set(runners.filter((r) => r.healthy && meets(r.labels, on) && r.labels[spread] !== undefined).map((r) => r.labels[spread]!))].sort()
    if (values.length === 0) {
      return yield* new CliFailure({ message: `${field.spread} ${spread}: no live runner${Object.keys(on).length === 0 ? "" : ` with ${requirementKey(on)}`} has a label ${spread}` })
    }
    return Array.from({ length: copies }, (_, i) => ({ placement: { on: { ...on, [spread]: values[i % values.length]! } } }))
  })
