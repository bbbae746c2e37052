/**
 * The CLI's commands on a cluster: each runs as a client-only participant (it finds the cluster
 * like runners do: `DATABASE_URL`, else the embedded store in `SHARDHUB_HOME`), does its one
 * thing through `HostClient` / `InstanceClient`, and leaves.
 *
 * @since 0.4.0
 */
import * as NodeSink from "@effect/platform-node/NodeSink"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Console, Duration, Effect, Option, Schedule, Stream } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { securityConfig } from "../base/Config.ts"
import * as RunnerList from "../client/RunnerList.ts"
import * as Security from "../transport/Security.ts"
import { appLabel, copiesOf, copySpec, isCopyOf, withCopyIndex } from "../client/Apps.ts"
import { HostClient } from "../client/HostClient.ts"
import { InstanceClient } from "../client/InstanceClient.ts"
import { InstanceNotFound, type RegistryError } from "../instance/InstanceErrors.ts"
import { type InstanceInfo, type InstanceStatus, liveStatuses } from "../instance/InstanceSpec.ts"
import * as Registry from "../instance/Registry.ts"
import type { LogLine } from "../process/LogStore.ts"
import { checkCron, deployFlags, deployFromFlags, placementFlags, placements } from "./Deploy.ts"
import * as Format from "./Format.ts"
import { archiveSource, CliFailure, environment, json, parseJson, print, rlimits, sendBundle, withClient, withRegistry, withStore } from "./Support.ts"

const id = Argument.String("id").pipe(Argument.withDescription("Instance id or name"))
const targets = Argument.String("target").pipe(Argument.withDescription("Instance id, name, or all"))

/** What reads instance records: the registry, or a HostClient. */
interface Records {
  readonly get: (id: string) => Effect.Effect<InstanceInfo, InstanceNotFound | RegistryError>
  readonly list: (filter?: { readonly statuses?: ReadonlyArray<InstanceStatus> }) => Effect.Effect<ReadonlyArray<InstanceInfo>, RegistryError>
}

/**
 * The instances `target` names, as PM2 addresses processes: an id, else every instance of that
 * name or every copy of that app (`run --instances`, an ecosystem app with `instances`), or
 * `all` (every live one, or every one with `ended`).
 */
const resolve = (records: Records, target: string, options: { readonly ended?: boolean } = {}) =>
  Effect.gen(function*() {
    if (target === "all") return (yield* records.list(options.ended ? {} : { statuses: liveStatuses })).map((info) => info.id)
    const byId = yield* records.get(target).pipe(
      Effect.map(Option.some),
      Effect.catchTag("InstanceNotFound", () => Effect.succeed(Option.none<InstanceInfo>()))
    )
    if (Option.isSome(byId)) return [byId.value.id]
    const named = (yield* records.list()).filter((info) => isCopyOf(info, target)).map((info) => info.id)
    if (named.length === 0) return yield* new InstanceNotFound({ id: target })
    return named
  })

/** The one instance `target` names (an id, or a name only one instance has). */
const resolveOne = (records: Records, target: string) =>
  Effect.flatMap(resolve(records, target), (ids) =>
    ids.length === 1
      ? Effect.succeed(ids[0]!)
      : Effect.fail(new CliFailure({ message: `${target} names ${ids.length} instances (${ids.join(", ")}); give an id` })))

/** Runs `f` on every instance `target` names, 16 at a time, printing each outcome line. */
const forEachTarget = <E, R>(
  records: Records,
  target: string,
  f: (id: string) => Effect.Effect<string, E, R>,
  options: { readonly ended?: boolean } = {}
) =>
  Effect.flatMap(resolve(records, target, options), (ids) =>
    Effect.forEach(ids, (id) => Effect.flatMap(f(id), print), { concurrency: 16, discard: true }))

const stdout = NodeSink.fromWritable<CliFailure, Uint8Array>({
  evaluate: () => process.stdout,
  onError: (error) => new CliFailure({ message: `could not write to stdout: ${String(error)}` }),
  endOnDone: false
})

/** A file's bytes, or stdin's for `-` or none. */
const readSource = (file: Option.Option<string>) =>
  NodeStream.fromReadable<Uint8Array, CliFailure>({
    evaluate: () => Option.isNone(file) || file.value === "-" ? process.stdin : Fs.createReadStream(file.value),
    onError: (error) => new CliFailure({ message: `could not read ${Option.getOrElse(file, () => "stdin")}: ${(error as Error).message}` })
  })

const run = Command.make("run", {
  id: Flag.String("id").pipe(Flag.withDescription("Instance id (default: a new UUID)"), Flag.optional),
  name: Flag.String("name").pipe(Flag.withDescription("A label for humans"), Flag.optional),
  restart: Flag.Literals("restart", ["never", "on-failure", "always"]).pipe(
    Flag.withDescription("Restart policy (default never)"),
    Flag.optional
  ),
  memory: Flag.Finite("memory").pipe(Flag.withDescription("Memory limit in MB"), Flag.optional),
  shell: Flag.Boolean("shell").pipe(Flag.withDescription("Run the command through /bin/sh -c"), Flag.withDefault(false)),
  user: Flag.String("user").pipe(Flag.withDescription("Run as this user (name or uid; the runner must be root)"), Flag.optional),
  group: Flag.String("group").pipe(Flag.withDescription("Run with this group (default the user's)"), Flag.optional),
  hub: Flag.Boolean("hub").pipe(
    Flag.withDescription("Give the program the gateway and a credential for its own instance and topics (SHARDHUB_HUB_URL, SHARDHUB_HUB_TOKEN)"),
    Flag.withDefault(false)
  ),
  limit: Flag.String("limit").pipe(
    Flag.withDescription("A resource limit, NAME=VALUE with NAME one of nproc, nofile, core (bytes); repeatable"),
    Flag.atLeast(0)
  ),
  env: Flag.String("env").pipe(Flag.withDescription("Set a variable, KEY=VALUE; repeatable"), Flag.atLeast(0)),
  envFile: Flag.String("env-file").pipe(Flag.withDescription("Set the variables of a dotenv file (KEY=VALUE lines); repeatable"), Flag.atLeast(0)),
  instances: Flag.String("instances").pipe(
    Flag.withDescription("Start N copies, named NAME-0 … NAME-(N-1) (NAME: --name, or the command's); max: one per CPU of this machine"),
    Flag.withDefault("1")
  ),
  ...deployFlags,
  ...placementFlags,
  cron: Flag.String("cron").pipe(
    Flag.withDescription("Run once per tick of this cron expression (5 fields, or 6 with seconds; UTC) instead of at once; never two runs at once"),
    Flag.optional
  ),
  inTopic: Flag.String("in-topic").pipe(Flag.withDescription("Feed the program's stdin from this topic"), Flag.optional),
  outTopic: Flag.String("out-topic").pipe(Flag.withDescription("Publish the program's stdout to this topic"), Flag.optional),
  bundle: Flag.String("bundle").pipe(
    Flag.withDescription("Store this directory in the cluster and run the command in it on whichever runner runs the instance"),
    Flag.optional
  ),
  envPass: Flag.String("env-pass").pipe(
    Flag.withDescription("Pass this runner variable on although it is withheld by default (e.g. DATABASE_URL); repeatable"),
    Flag.atLeast(0)
  ),
  command: Argument.String("command").pipe(
    Argument.withDescription("The command and its arguments, after --"),
    Argument.variadic({ min: 1 })
  )
}, (flags) =>
  Effect.gen(function*() {
    const host = yield* HostClient
    const [command, ...args] = flags.command
    const deploy = yield* deployFromFlags(flags, flags.restart)
    if (Option.isSome(flags.cron)) yield* checkCron("--cron", flags.cron.value)
    const limits = {
      ...(yield* rlimits(flags.limit)),
      ...Option.match(flags.memory, { onNone: () => ({}), onSome: (memoryMb) => ({ memoryMb }) })
    }
    const set = yield* environment(flags.envFile, flags.env)
    const env = {
      ...(Object.keys(set).length === 0 ? {} : { set }),
      ...(flags.envPass.length === 0 ? {} : { pass: flags.envPass })
    }
    const copies = flags.instances === "max" ? Os.availableParallelism() : Number(flags.instances)
    if (!Number.isInteger(copies) || copies < 1) {
      return yield* new CliFailure({ message: `--instances ${JSON.stringify(flags.instances)}: expected a whole number of at least 1, or max` })
    }
    if (copies > 1 && Option.isSome(flags.id)) return yield* new CliFailure({ message: "--id names one instance; leave it out with --instances" })
    const name = Option.getOrElse(flags.name, () => Path.basename(command!))
    const placed = yield* placements(flags.on, Option.getOrUndefined(flags.spread), copies)
    // A bundled command runs in its bundle, wherever it lands; else in this directory.
    const where = Option.isSome(flags.bundle) ? { bundle: yield* sendBundle(flags.bundle.value) } : { cwd: process.cwd() }
    const started = yield* Effect.forEach(Array.from({ length: copies }, (_, i) => i), (i) =>
      host.start({
        program: { _tag: "Command", command: command!, args, ...where, ...(flags.shell ? { shell: true } : {}) },
        ...(copies > 1
          ? { name: `${name}-${i}`, labels: { [appLabel]: name } }
          : Option.match(flags.name, { onNone: () => ({}), onSome: (name) => ({ name }) })),
        ...deploy,
        ...placed[i],
        ...(Option.isNone(flags.inTopic) && Option.isNone(flags.outTopic) ? {} : {
          topics: {
            ...Option.match(flags.inTopic, { onNone: () => ({}), onSome: (input) => ({ input }) }),
            ...Option.match(flags.outTopic, { onNone: () => ({}), onSome: (output) => ({ output }) })
          }
        }),
        ...Option.match(flags.cron, { onNone: () => ({}), onSome: (cron) => ({ schedule: { cron } }) }),
        ...(Object.keys(limits).length === 0 ? {} : { limits }),
        ...Option.match(flags.user, { onNone: () => ({}), onSome: (user) => ({ user }) }),
        ...Option.match(flags.group, { onNone: () => ({}), onSome: (group) => ({ group }) }),
        ...(flags.hub ? { hub: true } : {}),
        ...(copies > 1 ? { env: withCopyIndex(env, i) } : Object.keys(env).length === 0 ? {} : { env })
      }, Option.match(flags.id, { onNone: () => ({}), onSome: (id) => ({ id }) })),
      { concurrency: 16 })
    for (const info of started) yield* print(info.id)
  })).pipe(Command.withDescription("Start a command as an instance on the cluster (or --instances N copies); prints each id"), withClient)

const ps = Command.make("ps", {
  json,
  all: Flag.Boolean("all").pipe(Flag.withAlias("a"), Flag.withDescription("Include ended instances"), Flag.withDefault(false))
}, (flags) =>
  Effect.gen(function*() {
    const registry = yield* Registry.Registry
    const instances = yield* registry.list(flags.all ? {} : { statuses: liveStatuses })
    yield* print(flags.json ? Format.json(instances) : Format.instances(instances))
  })).pipe(Command.withDescription("List instances (running ones; --all for every one)"), withRegistry)

const info = Command.make("info", { id, json }, (flags) =>
  Effect.gen(function*() {
    const registry = yield* Registry.Registry
    const record = yield* registry.get(yield* resolveOne(registry, flags.id))
    yield* print(flags.json ? Format.json(record) : Format.record(record))
  })).pipe(Command.withDescription("Show one instance's record"), withRegistry)

const health = Command.make("health", { id, json }, (flags) =>
  Effect.gen(function*() {
    const instances = yield* InstanceClient
    const report = yield* instances.health(yield* resolveOne(yield* HostClient, flags.id))
    if (flags.json) return yield* print(Format.json(report))
    yield* print(Format.table(["FIELD", "VALUE"], [
      ["healthy", String(report.healthy)],
      ["status", report.status],
      ["pid", report.pid],
      ["uptime", Format.age(report.uptimeMs)],
      ["restarts", report.restarts],
      ["cpu", report.stats === undefined ? undefined : `${report.stats.cpuPercent.toFixed(1)}%`],
      ["rss", Format.bytes(report.stats?.rssBytes)]
    ]))
  })).pipe(Command.withDescription("Show whether an instance is healthy, and what it uses"), withClient)

const logs = Command.make("logs", {
  id: Argument.String("id").pipe(
    Argument.withDescription("Instance id or name (default: every running instance, each line prefixed with its name)"),
    Argument.optional
  ),
  follow: Flag.Boolean("follow").pipe(Flag.withAlias("f"), Flag.withDescription("Keep printing new lines"), Flag.withDefault(false)),
  tail: Flag.Int("tail").pipe(Flag.withDescription("Only the last N lines"), Flag.optional),
  json
}, (flags) =>
  Effect.gen(function*() {
    const instances = yield* InstanceClient
    const host = yield* HostClient
    const query = (tail: Option.Option<number>) => ({
      follow: flags.follow,
      ...Option.match(tail, { onNone: () => ({}), onSome: (tail) => ({ tail }) })
    })
    const line = (prefix: string) => (line: LogLine) => print(Format.logLine(line, { prefix, json: flags.json }))
    if (Option.isSome(flags.id)) {
      const target = yield* resolveOne(host, flags.id.value)
      return yield* instances.logs(target, query(flags.tail)).pipe(Stream.runForEach(line("")))
    }
    // Every running instance, as `pm2 logs`: the last lines of each (15 unless --tail), merged.
    const running = yield* host.list({ statuses: ["running"] })
    yield* Stream.mergeAll(
      running.map((info) =>
        instances.logs(info.id, query(Option.orElse(flags.tail, () => Option.some(15)))).pipe(
          Stream.map((entry) => [info.name ?? info.id, entry] as const),
          // One instance ending (or moving) does not end the others' logs.
          Stream.catchCause(() => Stream.empty)
        )
      ),
      { concurrency: "unbounded" }
    ).pipe(Stream.runForEach(([prefix, entry]) => line(prefix)(entry)))
  })).pipe(Command.withDescription("Print an instance's log lines (stdout, stderr and a sequence's log), or every running instance's"), withClient)

const timeout = Flag.Int("timeout").pipe(Flag.withDescription("ms before SIGKILL (default 10000)"), Flag.withDefault(10_000))

const stop = Command.make("stop", { target: targets, timeout }, (flags) =>
  Effect.gen(function*() {
    const instances = yield* InstanceClient
    yield* forEachTarget(yield* HostClient, flags.target, (id) => Effect.map(instances.stop(id, { timeoutMs: flags.timeout }), Format.outcome))
  })).pipe(Command.withDescription("Stop instances gracefully (SIGTERM, then SIGKILL after the timeout)"), withClient)

const restart = Command.make("restart", { target: targets, timeout }, (flags) =>
  Effect.gen(function*() {
    const instances = yield* InstanceClient
    yield* forEachTarget(yield* HostClient, flags.target, (id) =>
      Effect.map(instances.restart(id, { timeoutMs: flags.timeout }), Format.restarted))
  })).pipe(
    Command.withDescription("Restart instances: stop gracefully, then a new process under the same id (restarts one up, log continued)"),
    withClient
  )

const kill = Command.make("kill", { target: targets }, (flags) =>
  Effect.gen(function*() {
    const instances = yield* InstanceClient
    yield* forEachTarget(yield* HostClient, flags.target, (id) => Effect.map(instances.kill(id), Format.outcome))
  })).pipe(Command.withDescription("Kill instances (SIGKILL)"), withClient)

const removeCommand = (name: "rm" | "delete") =>
  Command.make(name, { target: targets }, (flags) =>
    Effect.gen(function*() {
      const instances = yield* InstanceClient
      yield* forEachTarget(yield* HostClient, flags.target, (id) =>
        Effect.as(instances.kill(id, { removeImmediately: true }), `${id} removed`), { ended: true })
    })).pipe(
      Command.withDescription(`Forget instances now (killing those that run); all: every instance${name === "delete" ? " (as PM2's delete)" : ""}`),
      withClient
    )

const inputCommand = (name: "input" | "stdin") =>
  Command.make(name, {
    id,
    file: Argument.String("file").pipe(Argument.withDescription("A file, or - for stdin (the default)"), Argument.optional),
    keepOpen: Flag.Boolean("keep-open").pipe(Flag.withDescription("Do not close the input at the end"), Flag.withDefault(false)),
    contentType: Flag.String("content-type").pipe(Flag.withDescription("For a sequence: how its input is decoded"), Flag.optional)
  }, (flags) =>
    Effect.gen(function*() {
      const instances = yield* InstanceClient
      yield* instances.input(flags.id, readSource(flags.file), {
        stream: name,
        end: !flags.keepOpen,
        ...Option.match(flags.contentType, { onNone: () => ({}), onSome: (contentType) => ({ contentType }) })
      })
    })).pipe(Command.withDescription(
      name === "input"
        ? "Send a file or stdin to an instance's input (a sequence's input stream, a command's stdin)"
        : "Send a file or stdin to an instance's stdin"
    ), withClient)

const outputCommand = (name: "output" | "stdout" | "stderr") =>
  Command.make(name, {
    id,
    live: Flag.Boolean("live").pipe(Flag.withDescription("Only what comes from now on"), Flag.withDefault(false))
  }, (flags) =>
    Effect.gen(function*() {
      const instances = yield* InstanceClient
      yield* Stream.run(instances.output(flags.id, name, { replay: !flags.live }), stdout)
    })).pipe(Command.withDescription(`Print an instance's ${name} as bytes, until the process ends`), withClient)

const event = Command.make("event").pipe(
  Command.withDescription("Send and receive named events"),
  Command.withSubcommands([
    Command.make("emit", {
      id,
      name: Argument.String("name"),
      data: Argument.String("data").pipe(Argument.withDescription("JSON (a plain word is sent as a string)"), Argument.optional)
    }, (flags) =>
      Effect.gen(function*() {
        const instances = yield* InstanceClient
        const data = Option.isNone(flags.data)
          ? null
          : yield* parseJson("data", flags.data.value).pipe(Effect.orElseSucceed(() => flags.data.pipe(Option.getOrThrow)))
        yield* instances.sendEvent(flags.id, flags.name, data)
      })).pipe(Command.withDescription("Send an event to an instance"), withClient),
    Command.make("on", {
      id,
      name: Argument.String("name"),
      once: Flag.Boolean("once").pipe(Flag.withDescription("Print the next one and exit"), Flag.withDefault(false))
    }, (flags) =>
      Effect.gen(function*() {
        const instances = yield* InstanceClient
        if (flags.once) {
          const next = yield* instances.nextEvent(flags.id, flags.name)
          return yield* print(Format.jsonLine(next.data))
        }
        yield* instances.events(flags.id, flags.name).pipe(Stream.runForEach((e) => print(Format.jsonLine(e.data))))
      })).pipe(Command.withDescription("Print an instance's events of that name (one JSON per line)"), withClient)
  ])
)

const topicName = Argument.String("name").pipe(Argument.withDescription("The topic's name"))

const topic = Command.make("topic").pipe(
  Command.withDescription("Topics: named byte streams between instances and clients"),
  Command.withSubcommands([
    Command.make("create", {
      name: topicName,
      durable: Flag.Boolean("durable").pipe(
        Flag.withDescription("Keep its chunks in the cluster store until every consumer instance has them (survives any runner)"),
        Flag.withDefault(false)
      ),
      contentType: Flag.String("content-type").pipe(Flag.withDescription("Its content type (default application/octet-stream)"), Flag.optional)
    }, (flags) =>
      Effect.gen(function*() {
        const host = yield* HostClient
        const created = yield* host.createTopic(flags.name, Option.getOrElse(flags.contentType, () => "application/octet-stream"), { durable: flags.durable })
        yield* print(`${created.name}${created.durable ? " (durable)" : ""}`)
      })).pipe(Command.withDescription("Create a topic (--durable: kept in the store)"), withClient),
    Command.make("ls", { json }, (flags) =>
      Effect.gen(function*() {
        const host = yield* HostClient
        const topics = yield* host.listTopics
        yield* print(flags.json ? Format.json(topics) : Format.table(["NAME", "CONTENT-TYPE"], topics.map((t) => [t.name, t.contentType])))
      })).pipe(Command.withDescription("List the cluster's topics"), withClient),
    Command.make("rm", { name: topicName }, (flags) =>
      Effect.gen(function*() {
        yield* (yield* HostClient).deleteTopic(flags.name)
        yield* print(`${flags.name} removed`)
      })).pipe(Command.withDescription("Forget a topic (a durable one with what it kept); refused while an instance uses it"), withClient)
  ])
)

const seq = Command.make("seq").pipe(
  Command.withDescription("Sequences: packages of a program, stored in the cluster"),
  Command.withSubcommands([
    Command.make("send", {
      path: Argument.String("path").pipe(Argument.withDescription("A .tar.gz / .tar package, or a directory to pack")),
      json
    }, (flags) =>
      Effect.gen(function*() {
        const host = yield* HostClient
        // Streamed either way: a directory is packed as it is sent.
        const { stat, stream } = yield* archiveSource(flags.path)
        if (!flags.json) yield* Console.error(`sending ${Path.basename(flags.path)}${stat.isDirectory() ? "" : ` (${Format.bytes(stat.size)})`}…`)
        const info = yield* host.sendSequence(stream)
        yield* print(flags.json ? Format.json(info) : info.id)
      })).pipe(Command.withDescription("Store a sequence package; prints its id"), withClient),
    Command.make("ls", { json }, (flags) =>
      Effect.gen(function*() {
        const host = yield* HostClient
        const sequences = yield* host.listSequences
        if (flags.json) return yield* print(Format.json(sequences))
        yield* print(Format.table(
          ["ID", "NAME", "VERSION", "ENGINE", "SIZE", "AGE"],
          sequences.map((s) => [s.id, s.name, s.version, s.engine, Format.bytes(s.size), Format.age(Date.now() - s.createdAt)])
        ))
      })).pipe(Command.withDescription("List stored sequences"), withClient),
    Command.make("rm", {
      id: Argument.String("id"),
      force: Flag.Boolean("force").pipe(Flag.withDescription("Also when instances of it run"), Flag.withDefault(false))
    }, (flags) =>
      Effect.gen(function*() {
        const host = yield* HostClient
        yield* host.deleteSequence(flags.id, { force: flags.force })
        yield* print(flags.id)
      })).pipe(Command.withDescription("Delete a sequence"), withClient),
    Command.make("start", {
      seq: Argument.String("seq").pipe(Argument.withDescription("Sequence id")),
      id: Flag.String("id").pipe(Flag.withDescription("Instance id (default: a new UUID)"), Flag.optional),
      args: Flag.String("args").pipe(Flag.withDescription("Arguments, as a JSON array"), Flag.optional),
      config: Flag.String("config").pipe(Flag.withDescription("The sequence's config (appConfig), as JSON"), Flag.optional)
    }, (flags) =>
      Effect.gen(function*() {
        const host = yield* HostClient
        const args = Option.isNone(flags.args) ? undefined : yield* parseJson("--args", flags.args.value)
        const appConfig = Option.isNone(flags.config) ? undefined : yield* parseJson("--config", flags.config.value)
        if (args !== undefined && !Array.isArray(args)) return yield* new CliFailure({ message: "--args must be a JSON array" })
        if (appConfig !== undefined && (typeof appConfig !== "object" || appConfig === null || Array.isArray(appConfig))) {
          return yield* new CliFailure({ message: "--config must be a JSON object" })
        }
        const started = yield* host.startSequence(flags.seq, {
          ...(args === undefined ? {} : { args: args as Array<unknown> }),
          ...(appConfig === undefined ? {} : { appConfig: appConfig as Record<string, unknown> }),
          ...Option.match(flags.id, { onNone: () => ({}), onSome: (id) => ({ id }) })
        })
        yield* print(started.id)
      })).pipe(Command.withDescription("Start an instance of a sequence; prints its id"), withClient)
  ])
)

const scale = Command.make("scale", {
  name: Argument.String("name").pipe(Argument.withDescription("An app's name (run --instances --name, an ecosystem app) or an instance's")),
  count: Argument.Int("count").pipe(Argument.withDescription("How many copies should run"))
}, (flags) =>
  Effect.gen(function*() {
    if (flags.count < 0) return yield* new CliFailure({ message: `scale ${flags.name}: the count must be 0 or more, not ${flags.count}` })
    const host = yield* HostClient
    const instances = yield* InstanceClient
    const copies = copiesOf(yield* host.list({ statuses: liveStatuses }), flags.name)
    if (copies.length === 0) return yield* new CliFailure({ message: `scale ${flags.name}: no running app or instance of that name` })
    // Down: the highest indexes go first. Up: the missing indexes, each a copy of the lowest.
    for (const { info } of copies.filter(({ index }) => index >= flags.count).reverse()) {
      yield* instances.kill(info.id, { removeImmediately: true })
      yield* print(`- ${info.name ?? info.id} removed ${info.id}`)
    }
    const template = copies[0]!.info.spec
    const taken = new Set(copies.map(({ index }) => index))
    const missing = Array.from({ length: flags.count }, (_, i) => i).filter((i) => !taken.has(i))
    const started = yield* Effect.forEach(missing, (i) =>
      host.start(copySpec(template, flags.name, i)), { concurrency: 16 })
    for (const info of started) yield* print(`+ ${info.name} started ${info.id}`)
  })).pipe(Command.withDescription("Run N copies of an app: start the missing indexes, remove the highest first"), withClient)

const runners = Command.make("runners", { json }, (flags) =>
  Effect.gen(function*() {
    const registry = yield* Registry.Registry
    const rows = yield* RunnerList.withInstances(registry)
    yield* print(flags.json ? Format.json(rows) : Format.runners(rows))
  })).pipe(Command.withDescription("List the cluster's runners"), withRegistry)

const top = Command.make("top", {
  interval: Flag.Int("interval").pipe(Flag.withDescription("ms between refreshes"), Flag.withDefault(2000)),
  once: Flag.Boolean("once").pipe(Flag.withDescription("Print one table and exit"), Flag.withDefault(false))
}, (flags) =>
  Effect.gen(function*() {
    const host = yield* HostClient
    const instances = yield* InstanceClient
    const frame = Effect.gen(function*() {
      const running = yield* host.list({ statuses: ["running"] })
      const stats = yield* Effect.forEach(
        running,
        (info) => instances.stats(info.id).pipe(Effect.timeout("1 second"), Effect.option),
        { concurrency: 16 }
      )
      return Format.table(
        ["ID", "NAME", "RUNNER", "PID", "CPU", "RSS", "PROCS"],
        running.map((info, i) => {
          const s = Option.getOrUndefined(stats[i]!)
          return [info.id, info.name, info.runner, info.pid, s === undefined ? undefined : `${s.cpuPercent.toFixed(1)}%`, Format.bytes(s?.rssBytes), s?.processes]
        })
      )
    })
    if (flags.once) return yield* Effect.flatMap(frame, print)
    yield* Effect.flatMap(frame, (text) => print(`\x1b[2J\x1b[H${new Date().toLocaleTimeString()}  (Ctrl-C to quit)\n${text}`)).pipe(
      Effect.repeat(Schedule.spaced(flags.interval))
    )
  })).pipe(Command.withDescription("A live table of running instances' CPU and memory"), withClient)

const key = Command.make("key").pipe(
  Command.withDescription("The cluster keys that authenticate and encrypt runner and data ports (kept in the store)"),
  Command.withSubcommands([
    Command.make("ls", { json }, (flags) =>
      Effect.gen(function*() {
        const config = yield* securityConfig
        const keys = yield* Security.loadKeys
        const dialed = Security.dialKey(keys, Duration.toMillis(Security.activationDelay(config.keyRefresh)))
        const rows = keys.map((k) => ({ id: k.id, createdAt: k.createdAt.toISOString(), dialed: k.id === dialed?.id }))
        if (flags.json) return yield* print(Format.json(rows))
        yield* print(Format.table(
          ["ID", "CREATED", "AGE", "DIALED"],
          keys.map((k, i) => [k.id, rows[i]!.createdAt, Format.age(k.ageMs), rows[i]!.dialed ? "yes" : "no"])
        ))
      })).pipe(Command.withDescription("List the active cluster keys (DIALED: the one participants dial with)"), withStore),
    Command.make("rotate", {}, () =>
      Effect.gen(function*() {
        const config = yield* securityConfig
        const id = yield* Security.rotate
        yield* print(id)
        yield* Console.error(
          `every participant accepts ${id} within ${Duration.format(config.keyRefresh)} and dials with it after ` +
            `${Duration.format(Security.activationDelay(config.keyRefresh))}; then run: shardhub key retire --old`
        )
      })).pipe(Command.withDescription("Add a new cluster key; participants switch to it on their own"), withStore),
    Command.make("retire", {
      id: Argument.String("id").pipe(Argument.withDescription("The key to retire"), Argument.optional),
      old: Flag.Boolean("old").pipe(Flag.withDescription("Retire every key but the newest"), Flag.withDefault(false))
    }, (flags) =>
      Effect.gen(function*() {
        if (flags.old === Option.isSome(flags.id)) {
          return yield* new CliFailure({ message: "give either a key id or --old" })
        }
        const retired = yield* Security.retire(Option.getOrElse(flags.id, () => "all-but-newest"))
        if (Option.isSome(flags.id) && retired.length === 0) {
          return yield* new CliFailure({
            message: `${flags.id.value} is not an active key, or it is the last one (run shardhub key rotate first)`
          })
        }
        for (const id of retired) yield* print(id)
      })).pipe(
        Command.withDescription("Retire a key: servers refuse it and close the connections opened with it"),
        withStore
      )
  ])
)

/**
 * The commands that run as a client of the cluster.
 *
 * @since 0.4.0
 */
export const clientCommands = [
  run,
  ps,
  info,
  health,
  logs,
  stop,
  restart,
  kill,
  removeCommand("rm"),
  removeCommand("delete"),
  scale,
  inputCommand("input"),
  inputCommand("stdin"),
  outputCommand("output"),
  outputCommand("stdout"),
  outputCommand("stderr"),
  event,
  seq,
  topic,
  runners,
  top,
  key
]
