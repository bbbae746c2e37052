/**
 * Sequence packages in STH's format: a tar.gz (or plain tar) of a directory with `package.json`
 * at its root (`main` required; `engines` with at most one of `node` / `python3`; optional
 * `args`), dependencies bundled inside.
 *
 * Packages come from users, so reading one trusts nothing: every entry is checked before
 * anything is written — no absolute paths, no `..`, no symlink pointing outside the package,
 * only files, directories and symlinks, bounded sizes and counts — and unpacking writes only
 * inside the target directory (symlinks last, files created exclusively).
 *
 * @since 0.4.0
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Zlib from "node:zlib"
import { Effect, Schema } from "effect"

/**
 * Why a package was refused.
 *
 * @since 0.4.0
 */
export class PackageError extends Schema.TaggedError<PackageError>()("PackageError", {
  reason: Schema.Literals([
    "TooLarge",
    "TooManyFiles",
    "Corrupt",
    "AbsolutePath",
    "PathTraversal",
    "SymlinkEscape",
    "UnsupportedEntry",
    "NoPackageJson",
    "InvalidPackageJson",
    "InvalidMain"
  ]),
  message: Schema.String
}) {}

/**
 * What a package declares.
 *
 * @since 0.4.0
 */
export const Manifest = Schema.Struct({
  name: Schema.optionalKey(Schema.String),
  version: Schema.optionalKey(Schema.String),
  /** The entry point, relative to the package root. */
  main: Schema.String,
  engine: Schema.Literals(["node", "python3"]),
  /** Default arguments, used when a start gives none. */
  args: Schema.Array(Schema.Unknown)
})
/** @since 0.4.0 */
export type Manifest = typeof Manifest.Type

/**
 * @since 0.4.0
 */
export interface Limits {
  /** Unpacked bytes (default 512 MiB). */
  readonly maxUnpackedBytes: number
  /** Entries (default 20 000). */
  readonly maxEntries: number
}

/** @since 0.4.0 */
export const defaultLimits: Limits = { maxUnpackedBytes: 512 * 1024 * 1024, maxEntries: 20_000 }

/**
 * One checked entry, its path relative to the package root.
 *
 * @since 0.4.0
 */
export type Entry =
  | { readonly type: "file"; readonly path: string; readonly mode: number; readonly data: Uint8Array }
  | { readonly type: "directory"; readonly path: string }
  | { readonly type: "symlink"; readonly path: string; readonly target: string }

/**
 * A package that passed every check.
 *
 * @since 0.4.0
 */
export interface Package {
  readonly manifest: Manifest
  readonly entries: ReadonlyArray<Entry>
}

const fail = (reason: PackageError["reason"], message: string) => new PackageError({ reason, message })

const BLOCK = 512

const field = (header: Uint8Array, start: number, length: number) => {
  const bytes = header.subarray(start, start + length)
  const end = bytes.indexOf(0)
  return Buffer.from(end < 0 ? bytes : bytes.subarray(0, end)).toString("utf8")
}

const octal = (header: Uint8Array, start: number, length: number): number => {
  // GNU base-256 for big values: the high bit of the first byte is set.
  if ((header[start]! & 0x80) !== 0) {
    let value = header[start]! & 0x7f
    for (let i = 1; i < length; i++) value = value * 256 + header[start + i]!
    return value
  }
  const text = field(header, start, length).trim()
  if (text === "") return 0
  if (!/^[0-7]+$/.test(text)) throw fail("Corrupt", `not a tar archive (bad number ${JSON.stringify(text)})`)
  return parseInt(text, 8)
}

const checksumOk = (header: Uint8Array) => {
  const stored = octal(header, 148, 8)
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!
  return sum === stored
}

/** Pax records: `<length> <key>=<value>\n`. */
const paxRecords = (data: Uint8Array): Map<string, string> => {
  const records = new Map<string, string>()
  const text = Buffer.from(data).toString("utf8")
  let at = 0
  while (at < text.length) {
    const space = text.indexOf(" ", at)
    if (space < 0) break
    const length = parseInt(text.slice(at, space), 10)
    if (!(length > 0)) throw fail("Corrupt", "bad pax header")
    const record = text.slice(space + 1, at + length - 1)
    const equals = record.indexOf("=")
    if (equals > 0) records.set(record.slice(0, equals), record.slice(equals + 1))
    at += length
  }
  return records
}

/** A path inside the package, normalized; refuses absolute paths and `..`. */
const safePath = (raw: string): string => {
  if (raw.includes("\0")) throw fail("Corrupt", "a path contains a NUL byte")
  if (raw.startsWith("/") || /^[A-Za-z]:[\\/]/.test(raw)) {
    throw fail("AbsolutePath", `the package contains an absolute path: ${raw}`)
  }
  const parts = raw.split(/[\\/]+/).filter((part) => part !== "" && part !== ".")
  if (parts.includes("..")) throw fail("PathTraversal", `the package contains a path leaving it: ${raw}`)
  return parts.join("/")
}

/** The most symlinks one path may pass through (Linux's own limit before ELOOP). */
const maxHops = 40

/**
 * Whether the symlink at `path` resolves inside the package, following every symlink of the
 * package on the way as the kernel would (so `L -> .` then `esc -> L/..` is caught: textually
 * `L/..` is `.`, but the kernel resolves `L` first). A dangling target inside is fine; a loop
 * or an absolute target is not.
 */
const resolvesInside = (path: string, links: ReadonlyMap<string, string>): boolean => {
  const resolved: Array<string> = []
  // Components still to walk, last one first; starts with the link itself.
  const pending = path.split("/").reverse()
  let hops = 0
  while (pending.length > 0) {
    const part = pending.pop()!
    if (part === "" || part === ".") continue
    if (part === "..") {
      if (resolved.length === 0) return false
      resolved.pop()
      continue
    }
    resolved.push(part)
    const target = links.get(resolved.join("/"))
    if (target === undefined) continue
    if (target.startsWith("/") || ++hops > maxHops) return false
    resolved.pop()
    pending.push(...target.split(/[\\/]+/).reverse())
  }
  return true
}

/** The tar bytes of a .tar.gz or .tar, bounded by `maxBytes`. */
const untarBytes = (archive: Uint8Array, maxBytes: number): Uint8Array => {
  if (archive.length >= 2 && archive[0] === 0x1f && archive[1] === 0x8b) {
    try {
      // A tar is its content plus headers and padding: allow room for them.
      return Zlib.gunzipSync(archive, { maxOutputLength: maxBytes + 64 * 1024 * 1024 })
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === "ERR_BUFFER_TOO_LARGE") throw fail("TooLarge", `the package unpacks to more than ${maxBytes} bytes`)
      throw fail("Corrupt", `not a gzip archive: ${(error as Error).message}`)
    }
  }
  return archive
}

/** Every entry of a tar, checked. */
const entriesOf = (tar: Uint8Array, limits: Limits): Array<Entry> => {
  const entries: Array<Entry> = []
  const seen = new Map<string, Entry["type"]>()
  let total = 0
  let at = 0
  let longName: string | undefined
  let longLink: string | undefined
  let pax = new Map<string, string>()
  let ended = false
  while (at + BLOCK <= tar.length) {
    const header = tar.subarray(at, at + BLOCK)
    if (header.every((byte) => byte === 0)) {
      ended = true
      break
    }
    if (!checksumOk(header)) throw fail("Corrupt", `not a tar archive (bad header checksum at byte ${at})`)
    const size = octal(header, 124, 12)
    const type = String.fromCharCode(header[156]!)
    const dataStart = at + BLOCK
    const dataEnd = dataStart + size
    if (dataEnd > tar.length) throw fail("Corrupt", "the archive is truncated")
    const data = tar.subarray(dataStart, dataEnd)
    at = dataStart + Math.ceil(size / BLOCK) * BLOCK
    if (type === "x") {
      pax = paxRecords(data)
      continue
    }
    if (type === "g") continue
    if (type === "L") {
      longName = field(data, 0, data.length)
      continue
    }
    if (type === "K") {
      longLink = field(data, 0, data.length)
      continue
    }
    const prefix = field(header, 345, 155)
    const name = pax.get("path") ?? longName ?? (prefix === "" ? field(header, 0, 100) : `${prefix}/${field(header, 0, 100)}`)
    const link = pax.get("linkpath") ?? longLink ?? field(header, 157, 100)
    const paxSize = pax.get("size")
    pax = new Map()
    longName = undefined
    longLink = undefined
    if (paxSize !== undefined && Number(paxSize) !== size) throw fail("Corrupt", "pax size does not match the header")
    const path = safePath(name)
    if (entries.length >= limits.maxEntries) throw fail("TooManyFiles", `the package has more than ${limits.maxEntries} entries`)
    if (path === "") {
      if (type === "5") continue
      throw fail("Corrupt", `an entry has an empty path: ${name}`)
    }
    let entry: Entry
    switch (type) {
      case "0":
      case "\0":
      case "7":
        total += size
        if (total > limits.maxUnpackedBytes) throw fail("TooLarge", `the package unpacks to more than ${limits.maxUnpackedBytes} bytes`)
        entry = { type: "file", path, mode: octal(header, 100, 8) & 0o755, data }
        break
      case "5":
        entry = { type: "directory", path }
        break
      case "2":
        if (link === "" || link.includes("\0")) throw fail("Corrupt", `the symlink ${path} has no valid target`)
        entry = { type: "symlink", path, target: link }
        break
      case "1":
        throw fail("UnsupportedEntry", `the package contains a hard link (${path}); use a copy or a symlink`)
      default:
        throw fail("UnsupportedEntry", `the package contains ${path}, which is not a file, directory or symlink (type ${JSON.stringify(type)})`)
    }
    const before = seen.get(path)
    if (before !== undefined && !(before === "directory" && entry.type === "directory")) {
      throw fail("Corrupt", `the package contains ${path} twice`)
    }
    seen.set(path, entry.type)
    entries.push(entry)
  }
  if (!ended && at !== tar.length) throw fail("Corrupt", "the archive is truncated")
  const links = new Map<string, string>()
  for (const entry of entries) if (entry.type === "symlink") links.set(entry.path, entry.target)
  for (const [path, target] of links) {
    if (!resolvesInside(path, links)) throw fail("SymlinkEscape", `the symlink ${path} points outside the package: ${target}`)
  }
  // No entry may sit below a symlink (it would be written through it).
  for (const entry of entries) {
    const parts = entry.path.split("/")
    for (let i = 1; i < parts.length; i++) {
      if (seen.get(parts.slice(0, i).join("/")) === "symlink") {
        throw fail("SymlinkEscape", `${entry.path} lies below the symlink ${parts.slice(0, i).join("/")}`)
      }
    }
  }
  return entries
}

const manifestOf = (entries: ReadonlyArray<Entry>): Manifest => {
  const packageJson = entries.find((entry) => entry.path === "package.json")
  if (packageJson === undefined || packageJson.type !== "file") {
    throw fail("NoPackageJson", "the package has no package.json at its root")
  }
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(packageJson.data).toString("utf8"))
  } catch (error) {
    throw fail("InvalidPackageJson", `package.json is not JSON: ${(error as Error).message}`)
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw fail("InvalidPackageJson", "package.json is not an object")
  const pkg = json as Record<string, unknown>
  const main = pkg.main
  const invalidMain = (why: string) =>
    fail("InvalidMain", `Sequence entrypoint path ${JSON.stringify(main)} is invalid (${why}). Check \`main\` field in package.json`)
  if (typeof main !== "string" || main.trim() === "") throw invalidMain("missing or not a string")
  let mainPath: string
  try {
    mainPath = safePath(main)
  } catch {
    throw invalidMain("outside the package")
  }
  const target = entries.find((entry) => entry.path === mainPath)
  if (target === undefined || target.type === "directory") throw invalidMain("no such file in the package")
  const engines = pkg.engines
  let engine: Manifest["engine"] = "node"
  if (engines !== undefined) {
    if (typeof engines !== "object" || engines === null || Array.isArray(engines)) {
      throw fail("InvalidPackageJson", "engines must be an object")
    }
    const keys = Object.keys(engines).filter((key) => key === "node" || key === "python3")
    if (keys.length > 1) throw fail("InvalidPackageJson", "engines may name only one of node and python3")
    if (keys[0] === "python3") engine = "python3"
  }
  if (pkg.args !== undefined && !Array.isArray(pkg.args)) throw fail("InvalidPackageJson", "args must be an array")
  if (pkg.name !== undefined && typeof pkg.name !== "string") throw fail("InvalidPackageJson", "name must be a string")
  if (pkg.version !== undefined && typeof pkg.version !== "string") throw fail("InvalidPackageJson", "version must be a string")
  return {
    ...(typeof pkg.name === "string" ? { name: pkg.name } : {}),
    ...(typeof pkg.version === "string" ? { version: pkg.version } : {}),
    main: mainPath,
    engine,
    args: (pkg.args as Array<unknown> | undefined) ?? []
  }
}

/**
 * Reads and checks a package archive (.tar.gz or .tar). Writes nothing.
 *
 * @since 0.4.0
 */
export const read = (archive: Uint8Array, limits: Limits = defaultLimits): Effect.Effect<Package, PackageError> =>
  Effect.try({
    try: () => {
      const entries = entriesOf(untarBytes(archive, limits.maxUnpackedBytes), limits)
      return { manifest: manifestOf(entries), entries }
    },
    catch: (error) => error instanceof PackageError ? error : fail("Corrupt", String(error))
  })

/**
 * Writes a checked package into `dir` (which must not exist yet): directories, then files
 * (created exclusively, never through a link), then symlinks.
 *
 * @since 0.4.0
 */
export const unpack = (pkg: Package, dir: string): Effect.Effect<void, PackageError> =>
  Effect.try({
    try: () => {
      Fs.mkdirSync(dir, { recursive: false, mode: 0o755 })
      const inside = (path: string) => Path.join(dir, ...path.split("/"))
      for (const entry of pkg.entries) {
        if (entry.type === "directory") Fs.mkdirSync(inside(entry.path), { recursive: true, mode: 0o755 })
      }
      for (const entry of pkg.entries) {
        if (entry.type !== "file") continue
        const target = inside(entry.path)
        Fs.mkdirSync(Path.dirname(target), { recursive: true, mode: 0o755 })
        const fd = Fs.openSync(target, Fs.constants.O_WRONLY | Fs.constants.O_CREAT | Fs.constants.O_EXCL | Fs.constants.O_NOFOLLOW, entry.mode | 0o600)
        try {
          Fs.writeSync(fd, entry.data)
        } finally {
          Fs.closeSync(fd)
        }
      }
      for (const entry of pkg.entries) {
        if (entry.type !== "symlink") continue
        const target = inside(entry.path)
        Fs.mkdirSync(Path.dirname(target), { recursive: true, mode: 0o755 })
        Fs.symlinkSync(entry.target, target)
      }
    },
    catch: (error) => fail("Corrupt", `could not unpack: ${(error as Error).message}`)
  })
