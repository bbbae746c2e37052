/**
 * Sequence packages in STH's format: a tar.gz (or plain tar) of a directory with `package.json`
 * at its root (`main` required; `engines` with at most one of `node` / `python3`; optional
 * `args`), dependencies bundled inside.
 *
 * Packages come from users, so reading one trusts nothing: every entry is checked — no absolute
 * paths, no `..`, no symlink resolving outside the package (following every link of the
 * package), only files, directories and symlinks, bounded sizes and counts — and unpacking
 * writes only inside its own new directory (files created exclusively and never through a link;
 * symlinks last, once every entry passed). A package that fails a check leaves nothing behind.
 *
 * Archives are streamed: gunzip runs in libuv's thread pool and the tar is parsed chunk by
 * chunk, so a 512 MiB package neither sits in memory nor blocks the event loop (which carries
 * the runner's shard lease).
 *
 * @since 0.4.0
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Readable } from "node:stream"
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
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 422
  }
}

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
  | { readonly type: "file"; readonly path: string; readonly mode: number; readonly size: number }
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

/** The longest path or link target an entry may have, in bytes (Linux's `PATH_MAX`). */
const maxPathBytes = 4096

/** A path inside the package, normalized; refuses absolute paths and `..`. */
const safePath = (raw: string): string => {
  if (raw.includes("\0")) throw fail("Corrupt", "a path contains a NUL byte")
  if (Buffer.byteLength(raw) > maxPathBytes) throw fail("Corrupt", `a path is longer than ${maxPathBytes} bytes`)
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

/** The largest package.json read into memory. */
const maxMetaBytes = 1024 * 1024

/** The largest pax or GNU long-name payload: a few paths' worth. */
const maxHeaderBytes = 64 * 1024

/** All pax and GNU long-name payloads of one package together. */
const maxHeadersTotal = 1024 * 1024

/**
 * Exactly-sized reads over a chunked source: headers whole, file data in the pieces it came in.
 */
class Reader {
  private readonly chunks: Array<Uint8Array> = []
  private buffered = 0
  private readonly source: AsyncIterator<Uint8Array>
  constructor(source: AsyncIterator<Uint8Array>) {
    this.source = source
  }

  /** Buffers at least `n` bytes; false when the source ended first. */
  private async fill(n: number): Promise<boolean> {
    while (this.buffered < n) {
      const next = await this.source.next()
      if (next.done === true) return false
      if (next.value.length === 0) continue
      this.chunks.push(next.value)
      this.buffered += next.value.length
    }
    return true
  }

  private take(n: number): Uint8Array {
    const first = this.chunks[0]!
    if (first.length > n) {
      this.chunks[0] = first.subarray(n)
      this.buffered -= n
      return first.subarray(0, n)
    }
    this.chunks.shift()
    this.buffered -= first.length
    return first
  }

  /** The next `n` bytes; `undefined` at a clean end, Corrupt at an end inside them. */
  async exact(n: number): Promise<Uint8Array | undefined> {
    if (!(await this.fill(n))) {
      if (this.buffered === 0) return undefined
      throw fail("Corrupt", "the archive is truncated")
    }
    const parts: Array<Uint8Array> = []
    let left = n
    while (left > 0) {
      const part = this.take(left)
      parts.push(part)
      left -= part.length
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n)
  }

  /** The next `n` bytes, piece by piece. */
  async *pieces(n: number): AsyncGenerator<Uint8Array> {
    let left = n
    while (left > 0) {
      if (this.buffered === 0 && !(await this.fill(1))) throw fail("Corrupt", "the archive is truncated")
      const piece = this.take(Math.min(left, this.chunks[0]!.length))
      left -= piece.length
      yield piece
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.pieces(n)) {
      // discarded
    }
  }
}

/** The tar stream of a .tar.gz or .tar, gunzipped off the event loop and bounded by `maxBytes`. */
async function* tarStream(source: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]()
  let first = await iterator.next()
  while (first.done !== true && first.value.length === 0) first = await iterator.next()
  if (first.done === true) return
  const head = first.value
  const rest = async function*() {
    yield head
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) yield next.value
  }
  if (!(head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b)) {
    yield* rest()
    return
  }
  // A tar is its content plus headers and padding: allow room for them.
  const limit = maxBytes + 64 * 1024 * 1024
  const gunzip = Readable.from(rest()).pipe(Zlib.createGunzip())
  let total = 0
  try {
    for await (const chunk of gunzip) {
      total += (chunk as Buffer).length
      if (total > limit) throw fail("TooLarge", `the package unpacks to more than ${maxBytes} bytes`)
      yield chunk as Buffer
    }
  } catch (error) {
    if (error instanceof PackageError) throw error
    throw fail("Corrupt", `not a gzip archive: ${(error as Error).message}`)
  } finally {
    gunzip.destroy()
  }
}

/** What is done with each file's bytes: checked only, or written. */
interface Sink {
  readonly file: (path: string, mode: number, data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) => Promise<void>
  readonly directory: (path: string) => Promise<void>
}

const discard: Sink = {
  file: async (_path, _mode, data) => {
    for await (const _ of data) {
      // checked only
    }
  },
  directory: async () => {}
}

/**
 * Writes into `dir` (created here; it must not exist): files exclusively, never through a link.
 * Private to the runner's user, whatever the archive says: directories 0700, files 0600 (0700
 * when executable) — a package may carry secrets (`config.env`).
 */
const writer = (dir: string): Sink => {
  const inside = (path: string) => Path.join(dir, ...path.split("/"))
  return {
    directory: async (path) => {
      await Fs.promises.mkdir(inside(path), { recursive: true, mode: 0o700 })
    },
    file: async (path, mode, data) => {
      const target = inside(path)
      await Fs.promises.mkdir(Path.dirname(target), { recursive: true, mode: 0o700 })
      const handle = await Fs.promises.open(
        target,
        Fs.constants.O_WRONLY | Fs.constants.O_CREAT | Fs.constants.O_EXCL | Fs.constants.O_NOFOLLOW,
        (mode & 0o111) === 0 ? 0o600 : 0o700
      )
      try {
        for await (const piece of data) await handle.write(piece)
      } finally {
        await handle.close()
      }
    }
  }
}

/** Every entry of a tar, checked, its files handed to `sink`; package.json's bytes kept. */
const scanTar = async (tar: AsyncIterable<Uint8Array>, limits: Limits, sink: Sink, kind: Kind) => {
  const reader = new Reader(tar[Symbol.asyncIterator]())
  const entries: Array<Entry> = []
  const seen = new Map<string, Entry["type"]>()
  let packageJson: Uint8Array | undefined
  let total = 0
  let at = 0
  let longName: string | undefined
  let longLink: string | undefined
  let pax = new Map<string, string>()
  let headerBytes = 0
  const meta = async (size: number) => {
    const data = (await reader.exact(size)) ?? new Uint8Array(0)
    if (data.length < size) throw fail("Corrupt", "the archive is truncated")
    await reader.skip(padding(size))
    return data
  }
  while (true) {
    const header = await reader.exact(BLOCK)
    if (header === undefined || header.every((byte) => byte === 0)) break
    if (!checksumOk(header)) throw fail("Corrupt", `not a tar archive (bad header checksum at byte ${at})`)
    const size = octal(header, 124, 12)
    const type = String.fromCharCode(header[156]!)
    at += BLOCK + size + padding(size)
    if (type === "x" || type === "g" || type === "L" || type === "K") {
      if (size > maxHeaderBytes) throw fail("Corrupt", `a tar metadata entry of ${size} bytes is over the limit of ${maxHeaderBytes}`)
      headerBytes += size
      if (headerBytes > maxHeadersTotal) throw fail("Corrupt", `the package's tar metadata is over the limit of ${maxHeadersTotal} bytes`)
    }
    if (type === "x") {
      pax = paxRecords(await meta(size))
      continue
    }
    if (type === "g") {
      await reader.skip(size + padding(size))
      continue
    }
    if (type === "L" || type === "K") {
      const data = await meta(size)
      if (type === "L") longName = field(data, 0, data.length)
      else longLink = field(data, 0, data.length)
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
      if (type === "5") {
        await reader.skip(size + padding(size))
        continue
      }
      throw fail("Corrupt", `an entry has an empty path: ${name}`)
    }
    let entry: Entry
    switch (type) {
      case "0":
      case "\0":
      case "7":
        total += size
        if (total > limits.maxUnpackedBytes) throw fail("TooLarge", `the package unpacks to more than ${limits.maxUnpackedBytes} bytes`)
        entry = { type: "file", path, mode: octal(header, 100, 8) & 0o755, size }
        break
      case "5":
        entry = { type: "directory", path }
        break
      case "2":
        if (link === "" || link.includes("\0") || Buffer.byteLength(link) > maxPathBytes) throw fail("Corrupt", `the symlink ${path} has no valid target`)
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
    if (entry.type === "file" && path === "package.json" && kind === "sequence") {
      if (size > maxMetaBytes) throw fail("InvalidPackageJson", `package.json is over ${maxMetaBytes} bytes`)
      packageJson = await meta(size)
      await sink.file(path, entry.mode, [packageJson])
      continue
    }
    if (entry.type === "file") await sink.file(path, entry.mode, reader.pieces(size))
    else {
      if (entry.type === "directory") await sink.directory(path)
      await reader.skip(size)
    }
    await reader.skip(padding(size))
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
  const links = new Map<string, string>()
  for (const entry of entries) if (entry.type === "symlink") links.set(entry.path, entry.target)
  for (const [path, target] of links) {
    if (!resolvesInside(path, links)) throw fail("SymlinkEscape", `the symlink ${path} points outside the package: ${target}`)
  }
  return { entries, ...(kind === "sequence" ? { manifest: manifestOf(entries, packageJson) } : {}) }
}

/**
 * What an archive holds: a sequence package (with its `package.json` manifest) or a bundle (any
 * directory: the files of a command, `shardhub run --bundle`).
 *
 * @since 0.10.0
 */
export type Kind = "sequence" | "bundle"

const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK

const manifestOf = (entries: ReadonlyArray<Entry>, packageJson: Uint8Array | undefined): Manifest => {
  if (packageJson === undefined) throw fail("NoPackageJson", "the package has no package.json at its root")
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(packageJson).toString("utf8"))
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
 * Where a package's bytes could not be read from (the source failed, not the package).
 *
 * @since 0.5.0
 */
export class SourceFailed {
  readonly _tag = "SourceFailed"
  readonly cause: unknown
  constructor(cause: unknown) {
    this.cause = cause
  }
}

/** The source's own failures, told apart from the package's. */
async function* guarded(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]()
  while (true) {
    let next: IteratorResult<Uint8Array>
    try {
      next = await iterator.next()
    } catch (error) {
      throw new SourceFailed(error)
    }
    if (next.done === true) return
    yield next.value
  }
}

const run = <A, E>(
  work: () => Promise<A>,
  onSource: (cause: unknown) => E
): Effect.Effect<A, PackageError | E> =>
  Effect.tryPromise({
    try: work,
    catch: (error) =>
      error instanceof PackageError
        ? error
        : error instanceof SourceFailed
        ? onSource(error.cause)
        : fail("Corrupt", `could not read the package: ${(error as Error).message}`)
  })

/**
 * Reads and checks a package archive (.tar.gz or .tar) as it streams from `source`. Writes
 * nothing; holds no more than a chunk and package.json in memory.
 *
 * @since 0.4.0
 */
export const check = <E = never>(
  source: AsyncIterable<Uint8Array>,
  limits: Limits = defaultLimits,
  onSource: (cause: unknown) => E = (cause) => { throw cause }
): Effect.Effect<Package, PackageError | E> =>
  run(() => scanTar(tarStream(guarded(source), limits.maxUnpackedBytes), limits, discard, "sequence") as Promise<Package>, onSource)

/**
 * Reads and checks a bundle archive (any directory, no manifest) as {@link check} does a package.
 *
 * @since 0.10.0
 */
export const checkBundle = <E = never>(
  source: AsyncIterable<Uint8Array>,
  limits: Limits = defaultLimits,
  onSource: (cause: unknown) => E = (cause) => { throw cause }
): Effect.Effect<{ readonly entries: ReadonlyArray<Entry> }, PackageError | E> =>
  run(() => scanTar(tarStream(guarded(source), limits.maxUnpackedBytes), limits, discard, "bundle"), onSource)

/**
 * Reads, checks and writes a package archive streaming from `source` into `dir` (created here;
 * it must not exist): directories and files as they come, symlinks once every entry passed.
 * On any failure `dir` is removed.
 *
 * @since 0.4.0
 */
export const unpack = <E = never>(
  source: AsyncIterable<Uint8Array>,
  dir: string,
  limits: Limits = defaultLimits,
  onSource: (cause: unknown) => E = (cause) => { throw cause },
  kind: Kind = "sequence"
): Effect.Effect<{ readonly entries: ReadonlyArray<Entry>; readonly manifest?: Manifest }, PackageError | E> =>
  run(async () => {
    await Fs.promises.mkdir(dir, { recursive: false, mode: 0o700 })
    try {
      const pkg = await scanTar(tarStream(guarded(source), limits.maxUnpackedBytes), limits, writer(dir), kind)
      for (const entry of pkg.entries) {
        if (entry.type !== "symlink") continue
        const target = Path.join(dir, ...entry.path.split("/"))
        await Fs.promises.mkdir(Path.dirname(target), { recursive: true, mode: 0o700 })
        await Fs.promises.symlink(entry.target, target)
      }
      return pkg
    } catch (error) {
      await Fs.promises.rm(dir, { recursive: true, force: true })
      throw error
    }
  }, onSource)

/**
 * An archive already in memory, as a source.
 *
 * @since 0.5.0
 */
export const fromBytes = (archive: Uint8Array): AsyncIterable<Uint8Array> => Readable.from([archive], { objectMode: false })
