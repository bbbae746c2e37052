/**
 * What the CLI's commands share: the one-line failure, the layers a command runs on (a
 * client-only participant, or the store alone), flags and input parsing.
 *
 * @since 0.6.0
 */
import { Console, Effect, Layer, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Fs from "node:fs"
import * as Util from "node:util"
import { HostClient } from "../client/HostClient.ts"
import * as Client from "../node/Client.ts"
import * as Pack from "../sequence/Pack.ts"
import * as Store from "../store/Store.ts"
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

/**
 * The lines of a dotenv file that are not an assignment, a comment, a blank line or the
 * continuation of a quoted multi-line value, as `line number: text` (Node's `util.parseEnv`,
 * which reads the values, skips such lines silently).
 */
const strayLines = (text: string): Array<string> => {
  const stray: Array<string> = []
  let open: string | undefined
  for (const [n, line] of text.split(/\r?\n/).entries()) {
    if (open !== undefined) {
      if (line.includes(open)) open = undefined
      continue
    }
    if (line.trim() === "" || line.trimStart().startsWith("#")) continue
    const match = /^\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_.-]*\s*=\s*(.*)$/.exec(line)
    if (match === null) {
      stray.push(`${n + 1}: ${JSON.stringify(line.slice(0, 80))}`)
      continue
    }
    const value = match[1]!
    const quote = value[0]
    if ((quote === '"' || quote === "'" || quote === "`") && !value.slice(1).includes(quote)) open = quote
  }
  return stray
}

/**
 * `KEY=VALUE` pairs from `--env` flags, after those of `--env-file`: dotenv files as Node reads
 * them (`util.parseEnv`: `#` comments, also after an unquoted value; quoted values, multi-line
 * in double quotes; `export`), a line that is none of these an error that names it.
 */
export const environment = (files: ReadonlyArray<string>, pairs: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const set: Record<string, string> = {}
    for (const file of files) {
      const text = yield* Effect.try({
        try: () => Fs.readFileSync(file, "utf8"),
        catch: (error) => new CliFailure({ message: `could not read --env-file ${file}: ${(error as Error).message}` })
      })
      const [stray] = strayLines(text)
      if (stray !== undefined) return yield* new CliFailure({ message: `${file}:${stray.replace(/^(\d+): /, "$1: expected KEY=VALUE, got ")}` })
      Object.assign(set, Util.parseEnv(text))
    }
    for (const pair of pairs) {
      const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(pair)
      if (match === null) return yield* new CliFailure({ message: `--env: expected KEY=VALUE, got ${JSON.stringify(pair.slice(0, 80))}` })
      set[match[1]!] = match[2]!
    }
    return set
  })


/** Words of a command line, as a shell splits them (quotes and backslashes; no expansion). */
export const splitWords = (line: string): Array<string> => {
  const words: Array<string> = []
  let word: string | undefined
  let quote: string | undefined
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (quote !== undefined) {
      if (c === quote) quote = undefined
      else if (c === "\\" && quote === "\"" && i + 1 < line.length) word += line[++i]
      else word += c
    } else if (c === "'" || c === "\"") {
      quote = c
      word ??= ""
    } else if (c === "\\" && i + 1 < line.length) {
      word = (word ?? "") + line[++i]
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word)
      word = undefined
    } else {
      word = (word ?? "") + c
    }
  }
  if (word !== undefined) words.push(word)
  return words
}

/** A package or bundle to send: a .tar.gz / .tar file as it is, or a directory packed as it is sent. */
export const archiveSource = (path: string) =>
  Effect.gen(function*() {
    const unreadable = (error: unknown) => new CliFailure({ message: `could not read ${path}: ${(error as Error).message}` })
    const stat = yield* Effect.try({ try: () => Fs.statSync(path), catch: unreadable })
    const stream = NodeStream.fromReadable({
      evaluate: () => stat.isDirectory() ? Pack.packStream(path) : Fs.createReadStream(path),
      onError: unreadable
    })
    return { stream, stat }
  })

/** Stores the bundle at `path` (a directory, or its .tar.gz) in the cluster; answers its hash. */
export const sendBundle = (path: string) =>
  Effect.gen(function*() {
    const host = yield* HostClient
    const { stream } = yield* archiveSource(path)
    return (yield* host.sendBundle(stream).pipe(
      Effect.mapError((error) => new CliFailure({ message: `bundle ${path}: ${error.message}` }))
    )).hash
  })
