/**
 * What the CLI's commands share: the one-line failure, the layers a command runs on (a
 * client-only participant, or the store alone), flags and input parsing.
 *
 * @since 0.6.0
 */
import { Console, Effect, Layer, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import * as Fs from "node:fs"
import * as Client from "../client/Client.ts"
import * as Store from "../cluster/Store.ts"
import * as Registry from "../instance/Registry.ts"

/** A failure the CLI reports in one line. */
export class CliFailure extends Schema.TaggedError<CliFailure>()("CliFailure", { message: Schema.String }) {}

const clientLayer = Client.layerFromEnv({ applicationName: "shardhub-cli" })
/** Commands that talk to instances join the cluster as a client-only participant. */
export const withClient = <Name extends string, Input, ContextInput, E, R>(
  self: Command.Command<Name, Input, ContextInput, E, R>
) => Command.provide(self, clientLayer)

const storeLayer = Store.layerFromEnv({ applicationName: "shardhub-cli" })
/** Commands that only read or write the store never boot the cluster client. */
export const withStore = <Name extends string, Input, ContextInput, E, R>(
  self: Command.Command<Name, Input, ContextInput, E, R>
) => Command.provide(self, storeLayer)
/** …and those that read the registry. */
export const withRegistry = <Name extends string, Input, ContextInput, E, R>(
  self: Command.Command<Name, Input, ContextInput, E, R>
) => Command.provide(self, Registry.layer.pipe(Layer.provideMerge(storeLayer)))

export const json = Flag.Boolean("json").pipe(Flag.withDescription("Print JSON"), Flag.withDefault(false))
export const print = (text: string) => Console.log(text)

export const parseJson = (what: string, text: string) =>
  Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: (error) => new CliFailure({ message: `${what} is not valid JSON: ${(error as Error).message}` })
  })

/** `--limit NAME=VALUE` flags as rlimits. */
export const rlimits = (given: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const limits: Record<string, number> = {}
    for (const flag of given) {
      const match = /^(nproc|nofile|core)=(\d+)$/.exec(flag)
      if (match === null) {
        return yield* new CliFailure({ message: `--limit ${flag}: expected NAME=VALUE with NAME one of nproc, nofile, core and VALUE a whole number` })
      }
      limits[match[1]!] = Number(match[2])
    }
    return limits as { nproc?: number; nofile?: number; core?: number }
  })

/** `KEY=VALUE` pairs from `--env` flags, after those of `--env-file` (dotenv lines). */
export const environment = (files: ReadonlyArray<string>, pairs: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const set: Record<string, string> = {}
    const assign = (where: string, line: string) => {
      const match = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line)
      if (match === null) return new CliFailure({ message: `${where}: expected KEY=VALUE, got ${JSON.stringify(line.slice(0, 80))}` })
      const raw = match[2]!
      const quoted = /^(["'])(.*)\1$/.exec(raw)
      set[match[1]!] = quoted === null ? raw : quoted[1] === '"' ? quoted[2]!.replace(/\\n/g, "\n") : quoted[2]!
      return undefined
    }
    for (const file of files) {
      const text = yield* Effect.try({
        try: () => Fs.readFileSync(file, "utf8"),
        catch: (error) => new CliFailure({ message: `could not read --env-file ${file}: ${(error as Error).message}` })
      })
      for (const [n, line] of text.split(/\r?\n/).entries()) {
        if (line.trim() === "" || line.trimStart().startsWith("#")) continue
        const failed = assign(`${file}:${n + 1}`, line)
        if (failed !== undefined) return yield* failed
      }
    }
    for (const pair of pairs) {
      const failed = assign("--env", pair)
      if (failed !== undefined) return yield* failed
    }
    return set
  })
