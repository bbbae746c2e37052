/**
 * `shardhub apply FILE`: an ecosystem file declares apps (a command or a sequence, its args, env,
 * restart policy, memory, copies) and the cluster is made to match it — what is missing is
 * started, what changed is replaced (stopped, then started with the new spec under the same
 * name), the rest is left alone; `--prune` also stops what this file started and no longer
 * lists. Applying the same file twice changes nothing.
 *
 * The file is JSON, YAML, or a JavaScript module whose default export (or `module.exports`) is
 * the object. Its apps take shardhub's keys (those of `shardhub run`) and the PM2 keys people's
 * `ecosystem.config.js` files use most (`script`, `interpreter`, `autorestart`,
 * `max_memory_restart`, `env_file`); keys neither knows are named in a warning and not used.
 *
 * What `apply` started carries two labels: the file's absolute path and the app's name. An
 * app's instances are its live ones by name (`NAME`, or `NAME-0` … `NAME-(N-1)` for N copies).
 *
 * @since 0.6.0
 */
import { Console, Effect, Option, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Url from "node:url"
import { applyAppLabel as appLabel, applyFileLabel as fileLabel, withCopyIndex } from "../client/Apps.ts"
import { HostClient } from "../client/HostClient.ts"
import { InstanceClient } from "../client/InstanceClient.ts"
import type { InstanceInfo, InstanceSpec } from "../instance/InstanceSpec.ts"
import { Rlimits } from "../process/ProcessSpec.ts"
import * as Rollout from "../client/Rollout.ts"
import { checkCron, type DeployKeys, deploySpec, finish, placements, progressLine, rolloutFlags, rolloutOptions } from "./Deploy.ts"
import * as Format from "./Format.ts"
import { CliFailure, environment, json, print, sendBundle, splitWords, withClient } from "./Support.ts"

const Scalar = Schema.Union([Schema.String, Schema.Finite, Schema.Boolean])

/**
 * One app of an ecosystem file.
 *
 * @since 0.6.0
 */
export const App = Schema.Struct({
  name: Schema.String.check(Schema.isPattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/)),
  /** A command (with `args`), or PM2's `script` (run by `interpreter`, `node` for .js files). */
  command: Schema.optionalKey(Schema.NonEmptyString),
  script: Schema.optionalKey(Schema.NonEmptyString),
  interpreter: Schema.optionalKey(Schema.NonEmptyString),
  /** A stored sequence's id; `args` are then its arguments and `config` its appConfig. */
  sequence: Schema.optionalKey(Schema.NonEmptyString),
  config: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown)),
  /** An array, or (as PM2 takes it) one string split like a shell splits words. */
  args: Schema.optionalKey(Schema.Union([Schema.Array(Schema.Unknown), Schema.String])),
  shell: Schema.optionalKey(Schema.Boolean),
  /** Relative to the file's directory, which is also the default. */
  cwd: Schema.optionalKey(Schema.String),
  /** Store `cwd` in the cluster and run the app in it on whichever runner runs it (`run --bundle`). */
  bundle: Schema.optionalKey(Schema.Boolean),
  /** The topic its input is fed from and the one its output is published to (`run --in-topic`, `--out-topic`). */
  topics: Schema.optionalKey(Schema.Struct({
    input: Schema.optionalKey(Schema.String),
    output: Schema.optionalKey(Schema.String),
    contentType: Schema.optionalKey(Schema.String)
  })),
  /** Runner labels the copies need (`on`, `run --on`), and a label to spread them over (`run --spread`). */
  placement: Schema.optionalKey(Schema.Struct({
    on: Schema.optionalKey(Schema.Record(Schema.String, Scalar)),
    spread: Schema.optionalKey(Schema.String)
  })),
  env: Schema.optionalKey(Schema.Record(Schema.String, Scalar)),
  env_file: Schema.optionalKey(Schema.Union([Schema.String, Schema.Array(Schema.String)])),
  envPass: Schema.optionalKey(Schema.Array(Schema.String)),
  restart: Schema.optionalKey(Schema.Literals(["never", "on-failure", "always"])),
  autorestart: Schema.optionalKey(Schema.Boolean),
  /** MB, or PM2's `max_memory_restart` (`"200M"`, `"1G"`, `"512K"`, bytes as a number). */
  memory: Schema.optionalKey(Schema.Finite.check(Schema.isGreaterThan(0))),
  max_memory_restart: Schema.optionalKey(Schema.Union([Schema.Finite, Schema.String])),
  limits: Schema.optionalKey(Rlimits),
  instances: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1000 }))),
  user: Schema.optionalKey(Schema.NonEmptyString),
  group: Schema.optionalKey(Schema.NonEmptyString),
  /** The gateway and a credential for the app's own instance and topics (`hub: true` of its spec). */
  hub: Schema.optionalKey(Schema.Boolean),
  /** When a copy is ready and healthy (the words of `run --ready` / `--health`), durations in ms. */
  ready: Schema.optionalKey(Schema.String),
  ready_timeout: Schema.optionalKey(Schema.Finite),
  health: Schema.optionalKey(Schema.String),
  health_interval: Schema.optionalKey(Schema.Finite),
  health_timeout: Schema.optionalKey(Schema.Finite),
  health_failures: Schema.optionalKey(Schema.Finite),
  /** PM2's readiness: `wait_ready` (the program calls `process.send("ready")`) within `listen_timeout`. */
  wait_ready: Schema.optionalKey(Schema.Boolean),
  listen_timeout: Schema.optionalKey(Schema.Finite),
  /** PM2's restart keys; durations in ms or as PM2 writes them (`"2s"`, `"1m"`). */
  max_restarts: Schema.optionalKey(Schema.Finite),
  min_uptime: Schema.optionalKey(Schema.Union([Schema.Finite, Schema.String])),
  restart_delay: Schema.optionalKey(Schema.Finite),
  exp_backoff_restart_delay: Schema.optionalKey(Schema.Finite),
  /** Run once per tick of this cron expression instead of at once (see `run --cron`). */
  cron: Schema.optionalKey(Schema.String)
})
/** @since 0.6.0 */
export type App = typeof App.Type

const EcosystemFile = Schema.Struct({ apps: Schema.Array(Schema.Unknown) })
const EnvBlock = Schema.Record(Schema.String, Scalar)


/** Reads an ecosystem file as data: JSON, YAML, or a module's export. */
const load = (file: string) =>
  Effect.tryPromise({
    try: async (): Promise<unknown> => {
      const extension = Path.extname(file).toLowerCase()
      if (extension === ".json") return JSON.parse(await Fs.promises.readFile(file, "utf8"))
      if (extension === ".yaml" || extension === ".yml") {
        const Yaml = await import("yaml")
        return Yaml.parse(await Fs.promises.readFile(file, "utf8"), { maxAliasCount: 100 })
      }
      if ([".js", ".cjs", ".mjs"].includes(extension)) {
        const module = await import(Url.pathToFileURL(file).href) as { readonly default?: unknown }
        return module.default ?? module
      }
      throw new Error("expected a .json, .yaml, .yml, .js, .cjs or .mjs file")
    },
    catch: (error) => new CliFailure({ message: `could not read ${file}: ${(error as Error).message}` })
  })

/** PM2's `max_memory_restart` in MB: a number of bytes, or a string with K, M or G. */
const megabytes = (value: number | string): number | undefined => {
  if (typeof value === "number") return value > 0 ? value / (1024 * 1024) : undefined
  const match = /^\s*(\d+(?:\.\d+)?)\s*([KMG])?B?\s*$/i.exec(value)
  if (match === null) return undefined
  const amount = Number(match[1])
  const unit = (match[2] ?? "").toUpperCase()
  const mb = unit === "K" ? amount / 1024 : unit === "G" ? amount * 1024 : unit === "M" ? amount : amount / (1024 * 1024)
  return mb > 0 ? mb : undefined
}

/** PM2's durations: ms as a number, or a string with ms, s, m or h. */
const milliseconds = (value: number | string): number | undefined => {
  if (typeof value === "number") return value >= 0 ? value : undefined
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(value)
  if (match === null) return undefined
  const unit = (match[2] ?? "ms").toLowerCase()
  return Math.round(Number(match[1]) * (unit === "h" ? 3_600_000 : unit === "m" ? 60_000 : unit === "s" ? 1000 : 1))
}

/** The ecosystem keys that give each deploy key, for errors that name them. */
const keyNames: Record<keyof DeployKeys, string> = {
  ready: "ready",
  readyTimeoutMs: "ready_timeout",
  health: "health",
  healthIntervalMs: "health_interval",
  healthTimeoutMs: "health_timeout",
  healthFailures: "health_failures",
  restart: "restart",
  maxRestarts: "max_restarts",
  minUptimeMs: "min_uptime",
  restartDelayMs: "restart_delay",
  expBackoffRestartDelayMs: "exp_backoff_restart_delay"
}

const failure = (file: string, app: string, message: string) => new CliFailure({ message: `${file}: app ${app}: ${message}` })

/** What one app declares: its instances' names, each with the spec it should run. */
const desired = (file: string, app: App) =>
  Effect.gen(function*() {
    const directory = Path.dirname(file)
    const fail = (message: string) => Effect.fail(failure(file, app.name, message))
    const programs = [app.command, app.script, app.sequence].filter((given) => given !== undefined)
    if (programs.length !== 1) return yield* fail("give exactly one of command, script or sequence")
    const cwd = Path.resolve(directory, app.cwd ?? ".")
    const args = app.args === undefined ? [] : typeof app.args === "string" ? splitWords(app.args) : app.args
    let program: InstanceSpec["program"]
    if (app.sequence !== undefined) {
      program = {
        _tag: "Sequence",
        sequenceId: app.sequence,
        ...(args.length === 0 ? {} : { args }),
        ...(app.config === undefined ? {} : { appConfig: app.config })
      }
    } else {
      if (args.some((arg) => typeof arg !== "string")) return yield* fail("a command's args are strings")
      const words = args as Array<string>
      // With a bundle the runner's copy of cwd is the working directory: the script is relative to it.
      const inCwd = app.script === undefined ? undefined : Path.relative(cwd, Path.resolve(cwd, app.script))
      if (app.bundle === true && inCwd?.startsWith("..")) {
        return yield* fail(`script ${app.script} lies outside cwd, which bundle: true sends`)
      }
      const script = app.script === undefined ? undefined : app.bundle === true ? `./${inCwd}` : Path.resolve(cwd, app.script)
      const [command, ...rest] = app.command !== undefined
        ? [app.command, ...words]
        : app.interpreter === "none" || (app.interpreter === undefined && !/\.[cm]?js$/.test(app.script!))
        ? [script!, ...words]
        : [app.interpreter ?? "node", script!, ...words]
      program = {
        _tag: "Command",
        command: command!,
        ...(rest.length === 0 ? {} : { args: rest }),
        ...(app.bundle === true ? { bundle: yield* sendBundle(cwd) } : { cwd }),
        ...(app.shell ? { shell: true } : {})
      }
    }
    const files = app.env_file === undefined ? [] : typeof app.env_file === "string" ? [app.env_file] : app.env_file
    const set = {
      ...(yield* environment(files.map((envFile) => Path.resolve(directory, envFile)), [])),
      ...Object.fromEntries(Object.entries(app.env ?? {}).map(([key, value]) => [key, String(value)]))
    }
    const env = {
      ...(Object.keys(set).length === 0 ? {} : { set }),
      ...(app.envPass === undefined || app.envPass.length === 0 ? {} : { pass: app.envPass })
    }
    const memoryMb = app.memory ?? (app.max_memory_restart === undefined ? undefined : megabytes(app.max_memory_restart))
    if (app.max_memory_restart !== undefined && memoryMb === undefined) {
      return yield* fail(`max_memory_restart ${JSON.stringify(app.max_memory_restart)}: expected bytes, or a size like 200M`)
    }
    const limits = { ...app.limits, ...(memoryMb === undefined ? {} : { memoryMb }) }
    const mode = app.restart ?? (app.autorestart === undefined ? undefined : app.autorestart ? "always" : "never")
    const minUptimeMs = app.min_uptime === undefined ? undefined : milliseconds(app.min_uptime)
    if (app.min_uptime !== undefined && minUptimeMs === undefined) {
      return yield* fail(`min_uptime ${JSON.stringify(app.min_uptime)}: expected ms, or a duration like 2s or 1m`)
    }
    const deploy = yield* deploySpec({
      ready: app.ready ?? (app.wait_ready === true ? "message" : undefined),
      readyTimeoutMs: app.ready_timeout ?? (app.wait_ready === true || app.ready !== undefined ? app.listen_timeout : undefined),
      health: app.health,
      healthIntervalMs: app.health_interval,
      healthTimeoutMs: app.health_timeout,
      healthFailures: app.health_failures,
      restart: mode,
      maxRestarts: app.max_restarts,
      minUptimeMs,
      restartDelayMs: app.restart_delay,
      expBackoffRestartDelayMs: app.exp_backoff_restart_delay
    }, (key) => keyNames[key]).pipe(Effect.mapError((error) => failure(file, app.name, error.message)))
    if (app.cron !== undefined) yield* checkCron("cron", app.cron).pipe(Effect.mapError((error) => failure(file, app.name, error.message)))
    const copies = app.instances ?? 1
    const placed = yield* placements(
      Object.entries(app.placement?.on ?? {}).map(([key, value]) => `${key}=${String(value)}`),
      app.placement?.spread,
      copies,
      { on: "placement.on", spread: "placement.spread" }
    ).pipe(Effect.mapError((error) => failure(file, app.name, error.message)))
    return Array.from({ length: copies }, (_, i) => {
      const name = copies === 1 ? app.name : `${app.name}-${i}`
      const spec: InstanceSpec = {
        program,
        name,
        labels: { [fileLabel]: file, [appLabel]: app.name },
        // Each copy knows its index, as under PM2 (NODE_APP_INSTANCE).
        env: withCopyIndex(env, i),
        ...(Object.keys(limits).length === 0 ? {} : { limits }),
        ...(app.user === undefined ? {} : { user: app.user }),
        ...(app.group === undefined ? {} : { group: app.group }),
        ...(app.hub === undefined ? {} : { hub: app.hub }),
        ...deploy,
        ...placed[i],
        ...(app.topics === undefined ? {} : { topics: app.topics }),
        ...(app.cron === undefined ? {} : { schedule: { cron: app.cron } })
      }
      return { name, spec }
    })
  })

/** The apps of `file` and warnings about what in it is not used. */
const readApps = (file: string, envName: string | undefined) =>
  Effect.gen(function*() {
    const decoded = yield* Schema.decodeUnknownEffect(EcosystemFile)(yield* load(file)).pipe(
      Effect.mapError(() => new CliFailure({ message: `${file}: expected an object with an "apps" array` }))
    )
    const warnings: Array<string> = []
    const apps: Array<App> = []
    const known = new Set(Object.keys(App.fields))
    for (const [i, raw] of decoded.apps.entries()) {
      const label = typeof raw === "object" && raw !== null && typeof (raw as { name?: unknown }).name === "string"
        ? (raw as { name: string }).name
        : `#${i + 1}`
      const app = yield* Schema.decodeUnknownEffect(App)(raw, { onExcessProperty: "ignore" }).pipe(
        Effect.mapError((error) => failure(file, label, error.message))
      )
      // PM2's per-environment blocks: `env_<name>`, chosen with --env <name>, over `env`.
      const unused = Object.keys(raw as object).filter((key) => !known.has(key) && !key.startsWith("env_"))
      if (unused.length > 0) warnings.push(`app ${app.name}: not used: ${unused.join(", ")}`)
      const block = envName === undefined ? undefined : (raw as Record<string, unknown>)[`env_${envName}`]
      const chosen = block === undefined ? {} : yield* Schema.decodeUnknownEffect(EnvBlock)(block).pipe(
        Effect.mapError(() => failure(file, app.name, `env_${envName}: expected an object of strings, numbers or booleans`))
      )
      apps.push(Object.keys(chosen).length === 0 ? app : { ...app, env: { ...app.env, ...chosen } })
    }
    const names = apps.map((app) => app.name)
    const twice = names.find((name, i) => names.indexOf(name) !== i)
    if (twice !== undefined) return yield* new CliFailure({ message: `${file}: app ${twice} is declared twice` })
    return { apps, warnings }
  })

/** A spec as canonical JSON: keys sorted, so stored and declared specs compare by content. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_, v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
      : v)

/**
 * One step of a plan.
 *
 * @since 0.6.0
 */
export type Step =
  | { readonly _tag: "Start"; readonly name: string; readonly spec: InstanceSpec }
  | { readonly _tag: "Replace"; readonly name: string; readonly spec: InstanceSpec; readonly old: ReadonlyArray<string> }
  | { readonly _tag: "Keep"; readonly name: string; readonly id: string }
  | { readonly _tag: "Stop"; readonly name: string; readonly id: string }

/**
 * What makes the live instances match the declared ones: start what is missing, replace what
 * runs another spec (and any second copy of a name), keep the rest; with `prune`, stop what
 * `file` started and no longer declares.
 *
 * @since 0.6.0
 */
export const plan = (
  file: string,
  declared: ReadonlyArray<{ readonly name: string; readonly spec: InstanceSpec }>,
  live: ReadonlyArray<InstanceInfo>,
  prune: boolean
): Array<Step> => {
  const steps: Array<Step> = []
  for (const { name, spec } of declared) {
    const running = live.filter((info) => info.name === name)
    const same = running.find((info) => canonical(info.spec) === canonical(spec))
    if (same === undefined) {
      steps.push(running.length === 0 ? { _tag: "Start", name, spec } : { _tag: "Replace", name, spec, old: running.map((info) => info.id) })
      continue
    }
    steps.push({ _tag: "Keep", name, id: same.id })
    for (const other of running) if (other !== same) steps.push({ _tag: "Stop", name, id: other.id })
  }
  if (prune) {
    const names = new Set(declared.map(({ name }) => name))
    for (const info of live) {
      if (info.spec.labels?.[fileLabel] === file && !names.has(info.name ?? "")) steps.push({ _tag: "Stop", name: info.name ?? info.id, id: info.id })
    }
  }
  return steps
}

const describe = (step: Step, outcome?: string) => {
  switch (step._tag) {
    case "Start":
      return `+ ${step.name} started ${outcome ?? ""}`.trimEnd()
    case "Replace":
      return `~ ${step.name} replaced ${step.old.join(", ")}${outcome === undefined ? "" : ` → ${outcome}`}`
    case "Keep":
      return `= ${step.name} unchanged ${step.id}`
    case "Stop":
      return `- ${step.name} stopped ${step.id}`
  }
}

const apply = Command.make("apply", {
  file: Argument.String("file").pipe(Argument.withDescription("An ecosystem file: .json, .yaml/.yml or .js/.cjs/.mjs with an apps array")),
  prune: Flag.Boolean("prune").pipe(Flag.withDescription("Also stop what this file started and no longer lists"), Flag.withDefault(false)),
  dryRun: Flag.Boolean("dry-run").pipe(Flag.withDescription("Print what would change, change nothing"), Flag.withDefault(false)),
  timeout: Flag.Int("timeout").pipe(Flag.withDescription("ms before SIGKILL when stopping (default 10000)"), Flag.withDefault(10_000)),
  env: Flag.String("env").pipe(Flag.withDescription("Use each app's env_<name> block over its env (PM2's --env)"), Flag.optional),
  ...rolloutFlags,
  json
}, (flags) =>
  Effect.gen(function*() {
    const file = Path.resolve(flags.file)
    const options = yield* rolloutOptions(flags, flags.timeout)
    const { apps, warnings } = yield* readApps(file, Option.getOrUndefined(flags.env))
    for (const warning of warnings) yield* Console.error(`shardhub: ${file}: ${warning}`)
    const declared = (yield* Effect.forEach(apps, (app) => desired(file, app))).flat()
    const host = yield* HostClient
    const instances = yield* InstanceClient
    const live = (yield* host.list({ statuses: ["starting", "running"] })).filter((info) => info.desired === "running")
    const steps = plan(file, declared, live, flags.prune)
    const report = (step: Step, outcome?: string) =>
      flags.json ? print(Format.jsonLine({ ...step, ...(outcome === undefined ? {} : { id: outcome }) })) : print(describe(step, outcome))
    if (flags.dryRun) return yield* Effect.forEach(steps, (step) => report(step), { discard: true })
    // What changed is replaced copy by copy, each app on its own rollout (see `reload`).
    const replacing = steps.filter((step) => step._tag === "Replace")
    const byApp = new Map<string, Array<Rollout.Replacement>>()
    for (const step of replacing) {
      const [first, ...others] = step.old.map((id) => live.find((info) => info.id === id)!)
      const app = step.spec.labels?.[appLabel] ?? step.name
      byApp.set(app, [...byApp.get(app) ?? [], { name: step.name, old: first, spec: step.spec }])
      for (const other of others) yield* instances.stop(other.id, { timeoutMs: flags.timeout })
    }
    yield* Effect.forEach(steps, (step): Effect.Effect<void, unknown> => {
      switch (step._tag) {
        case "Keep":
          return report(step)
        case "Stop":
          return Effect.andThen(instances.stop(step.id, { timeoutMs: flags.timeout }), report(step))
        case "Start":
          return Effect.flatMap(host.start(step.spec), (info) => report(step, info.id))
        case "Replace":
          return Effect.void
      }
    }, { concurrency: 16, discard: true })
    const reports = yield* Effect.forEach(byApp.values(), (replacements) =>
      Rollout.rollout(replacements, options, (event) => event._tag === "Failed" || event._tag === "Reverted" ? progressLine(flags.json)(event) : Effect.void).pipe(
        Effect.tap((outcome) =>
          Effect.forEach(outcome.replaced, ({ name, old, id }) =>
            report({ _tag: "Replace", name, spec: replacing.find((step) => step.name === name)!.spec, old: old === undefined ? [] : [old] }, id))
        )
      ), { concurrency: 16 })
    yield* finish({
      ok: reports.every((r) => r.ok),
      replaced: reports.flatMap((r) => r.replaced),
      failed: reports.flatMap((r) => r.failed),
      reverted: reports.some((r) => r.reverted)
    }, flags.json, true)
  })).pipe(
  Command.withDescription(
    "Make the cluster match an ecosystem file: start what is missing, replace what changed copy by copy (as reload), --prune: stop what it no longer lists"
  ),
  withClient
)

/** @since 0.6.0 */
export const applyCommands = [apply]
