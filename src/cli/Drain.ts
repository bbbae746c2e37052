/**
 * `shardhub runner drain ADDRESS` and `shardhub runner undrain ADDRESS` (see `client/Drain`).
 *
 * @since 0.10.0
 */
import { Effect, Stream } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Drain from "../client/Drain.ts"
import * as Registry from "../instance/Registry.ts"
import * as Format from "./Format.ts"
import { CliFailure, json, print, withRegistry } from "./Support.ts"

const address = Argument.String("address").pipe(Argument.withDescription("The runner's HOST:PORT, as shardhub runners lists it"))

const drain = Command.make("drain", {
  address,
  parallel: Flag.Int("parallel").pipe(Flag.withDescription("Instances moving at once (default 4)"), Flag.withDefault(4)),
  timeout: Flag.Int("timeout").pipe(Flag.withDescription("ms to wait for the runner to empty (default 600000; 0: do not wait)"), Flag.withDefault(600_000)),
  json
}, (flags) =>
  Effect.gen(function*() {
    if (flags.parallel < 1 || flags.parallel > 1000) return yield* new CliFailure({ message: "--parallel is 1–1000" })
    const registry = yield* Registry.Registry
    const started = Date.now()
    yield* Drain.drain(registry, flags.address, { parallel: flags.parallel })
    if (!flags.json) yield* print(`draining ${flags.address}, ${flags.parallel} at a time`)
    if (flags.timeout === 0) return
    const first = yield* Drain.progress(registry, flags.address)
    const last = yield* Drain.follow(registry, flags.address).pipe(
      Stream.tap((p) => flags.json ? Effect.void : print(Format.drainLine(p, first.instances))),
      Stream.runLast,
      Effect.timeoutOption(flags.timeout)
    )
    const done = last._tag === "Some" && last.value._tag === "Some" ? last.value.value : yield* Drain.progress(registry, flags.address)
    const report = { address: flags.address, drained: done.instances === 0 && done.shards === 0, moved: first.instances - done.instances, left: done.instances, ms: Date.now() - started }
    if (flags.json) yield* print(Format.json(report))
    else if (report.drained) yield* print(`drained ${flags.address}: ${report.moved} instance${report.moved === 1 ? "" : "s"} moved in ${(report.ms / 1000).toFixed(1)} s`)
    if (!report.drained) {
      return yield* new CliFailure({ message: `${flags.address} still runs ${done.instances} instance(s) and holds ${done.shards} shard(s) after ${flags.timeout} ms; the drain goes on` })
    }
  })).pipe(Command.withDescription("Move a runner's instances to the other runners, a few at a time; it then takes nothing new"), withRegistry)

const undrain = Command.make("undrain", { address }, (flags) =>
  Effect.gen(function*() {
    yield* Drain.undrain(flags.address)
    yield* print(`${flags.address} takes shards again`)
  })).pipe(Command.withDescription("End a drain: the runner takes shards again"), withRegistry)

/**
 * The subcommands of `shardhub runner`.
 *
 * @since 0.10.0
 */
export const drainCommands = [drain, undrain]
