/**
 * Help without loading the CLI: the text `shardhub … --help` (or `--version`, or no arguments)
 * printed is kept in `$SHARDHUB_HOME/cache` (private to the user), keyed by the arguments and
 * the CLI's own source files (path, size, mtime), so that the next identical request prints it
 * at Node's start-up cost instead of loading Effect. Anything unusual (no cache, a changed
 * source, an unreadable file) falls back to the real CLI, which refills the cache.
 *
 * @since 0.6.0
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const sources = ["Cli.ts", "Commands.ts", "Local.ts", "../../package.json"].map((file) => Path.join(import.meta.dirname, file))

/** Only arguments before `--` count: `shardhub run -- grep --help` is not a help request. */
const isHelpRequest = (args: ReadonlyArray<string>) => {
  const own = args.includes("--") ? args.slice(0, args.indexOf("--")) : args
  return own.length === 0 || own.includes("--help") || own.includes("-h") || (own.length === 1 && own[0] === "--version")
}

const cacheFile = (args: ReadonlyArray<string>): string | undefined => {
  if (!isHelpRequest(args)) return undefined
  const stamp = sources.map((file) => {
    const stat = Fs.statSync(file, { throwIfNoEntry: false })
    return stat === undefined ? `${file}:none` : `${file}:${stat.size}:${stat.mtimeMs}`
  })
  const key = Crypto.createHash("sha256").update(JSON.stringify([args, stamp])).digest("hex").slice(0, 32)
  const home = Path.resolve(process.env["SHARDHUB_HOME"] || Path.join(Os.homedir(), ".shardhub"))
  return Path.join(home, "cache", `help-${key}.txt`)
}

/**
 * Prints the cached answer to `args` and says so; `false` when there is none.
 *
 * @since 0.6.0
 */
export const printCached = (args: ReadonlyArray<string>): boolean => {
  const file = cacheFile(args)
  if (file === undefined) return false
  try {
    process.stdout.write(Fs.readFileSync(file))
    return true
  } catch {
    return false
  }
}

/**
 * Keeps what the CLI prints for a help request, if it ends well.
 *
 * @since 0.6.0
 */
export const record = (args: ReadonlyArray<string>) => {
  const file = cacheFile(args)
  if (file === undefined) return
  const chunks: Array<string> = []
  const write = process.stdout.write.bind(process.stdout)
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: Array<never>) => {
    chunks.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"))
    return write(chunk, ...rest)
  }) as typeof process.stdout.write
  process.once("exit", (code) => {
    if (code !== 0 || chunks.length === 0) return
    try {
      Fs.mkdirSync(Path.dirname(file), { recursive: true, mode: 0o700 })
      Fs.writeFileSync(`${file}.${process.pid}`, chunks.join(""), { mode: 0o600 })
      Fs.renameSync(`${file}.${process.pid}`, file)
    } catch {
      // no cache this time
    }
  })
}
