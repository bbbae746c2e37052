/**
 * Packing sequence packages: a directory into a tar.gz with `package.json` at its root (what
 * `si seq pack` does), and the tar writer under it. {@link packStream} streams (what `shardhub
 * seq send DIR` sends: a big `node_modules` is read file by file in pieces and gzipped in the
 * thread pool, never held whole nor blocking the event loop); {@link packDirectory} and
 * {@link tar} build small archives in memory (tests, benchmarks).
 *
 * @since 0.4.0
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pipeline, Readable } from "node:stream"
import * as Zlib from "node:zlib"

/**
 * One tar entry, written as given (paths are not checked: a test can write a hostile archive).
 *
 * @since 0.4.0
 */
export type TarEntry =
  | { readonly type: "file"; readonly path: string; readonly data: Uint8Array | string; readonly mode?: number }
  | { readonly type: "directory"; readonly path: string }
  | { readonly type: "symlink" | "hardlink"; readonly path: string; readonly target: string }

const BLOCK = 512

const octal = (value: number, length: number) => value.toString(8).padStart(length - 1, "0") + "\0"

const header = (name: string, type: string, size: number, mode: number, link = "") => {
  const block = Buffer.alloc(BLOCK)
  block.write(name, 0, 100, "utf8")
  block.write(octal(mode, 8), 100, "ascii")
  block.write(octal(0, 8), 108, "ascii")
  block.write(octal(0, 8), 116, "ascii")
  block.write(octal(size, 12), 124, "ascii")
  // No time: the same files make the same archive (and the same bundle hash).
  block.write(octal(0, 12), 136, "ascii")
  block.write(type, 156, "ascii")
  block.write(link, 157, 100, "utf8")
  block.write("ustar\x0000", 257, "binary")
  block.fill(32, 148, 156)
  let sum = 0
  for (const byte of block) sum += byte
  block.write(octal(sum, 7) + " ", 148, "ascii")
  return block
}

const padded = (data: Uint8Array) => {
  const rest = data.length % BLOCK
  return rest === 0 ? [Buffer.from(data)] : [Buffer.from(data), Buffer.alloc(BLOCK - rest)]
}

/** A pax header carrying a path (or link target) too long for the ustar fields. */
const pax = (records: Record<string, string>) => {
  const body = Object.entries(records).map(([key, value]) => {
    const text = ` ${key}=${value}\n`
    let length = text.length + 1
    while (String(length).length + text.length !== length) length++
    return `${length}${text}`
  }).join("")
  const data = Buffer.from(body, "utf8")
  return [header("PaxHeader", "x", data.length, 0o644), ...padded(data)]
}

/** What an entry's header says (a file's data follows it). */
type EntryHeader =
  | { readonly type: "file"; readonly path: string; readonly size: number; readonly mode: number }
  | { readonly type: "directory"; readonly path: string }
  | { readonly type: "symlink" | "hardlink"; readonly path: string; readonly target: string }

/** An entry's header blocks: a pax header first when a name is too long for the ustar fields. */
const headerBlocks = (entry: EntryHeader): Array<Buffer> => {
  const link = entry.type === "symlink" || entry.type === "hardlink" ? entry.target : ""
  const long: Record<string, string> = {}
  if (Buffer.byteLength(entry.path) > 99) long["path"] = entry.path
  if (Buffer.byteLength(link) > 99) long["linkpath"] = link
  const blocks = Object.keys(long).length > 0 ? pax(long) : []
  switch (entry.type) {
    case "file":
      return [...blocks, header(entry.path.slice(0, 99), "0", entry.size, entry.mode)]
    case "directory":
      return [...blocks, header(entry.path.slice(0, 99), "5", 0, 0o755)]
    case "symlink":
    case "hardlink":
      return [...blocks, header(entry.path.slice(0, 99), entry.type === "symlink" ? "2" : "1", 0, 0o777, link.slice(0, 99))]
  }
}

/** The two zero blocks that end an archive. */
const end = () => Buffer.alloc(BLOCK * 2)

/**
 * A tar of `entries`.
 *
 * @since 0.4.0
 */
export const tar = (entries: ReadonlyArray<TarEntry>): Buffer => {
  const blocks: Array<Buffer> = []
  for (const entry of entries) {
    if (entry.type !== "file") {
      blocks.push(...headerBlocks(entry))
      continue
    }
    const data = typeof entry.data === "string" ? Buffer.from(entry.data) : entry.data
    blocks.push(...headerBlocks({ type: "file", path: entry.path, size: data.length, mode: entry.mode ?? 0o644 }), ...padded(data))
  }
  blocks.push(end())
  return Buffer.concat(blocks)
}

/**
 * The tar of a directory, read as it is written: entries in name order, a file's bytes in the
 * pieces it is read in. A file that shrinks while it is read is padded with zeros and one that
 * grows is cut at the size it had, so the archive is always well-formed.
 */
async function* tarOf(dir: string): AsyncGenerator<Buffer> {
  async function* walk(relative: string): AsyncGenerator<Buffer> {
    const dirents = (await Fs.promises.readdir(Path.join(dir, relative), { withFileTypes: true }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    for (const dirent of dirents) {
      const path = relative === "" ? dirent.name : `${relative}/${dirent.name}`
      const full = Path.join(dir, path)
      if (dirent.isSymbolicLink()) {
        yield* headerBlocks({ type: "symlink", path, target: await Fs.promises.readlink(full) })
      } else if (dirent.isDirectory()) {
        yield* headerBlocks({ type: "directory", path })
        yield* walk(path)
      } else if (dirent.isFile()) {
        const stat = await Fs.promises.stat(full)
        yield* headerBlocks({ type: "file", path, size: stat.size, mode: stat.mode & 0o777 })
        let left = stat.size
        if (left > 0) {
          for await (const piece of Fs.createReadStream(full, { start: 0, end: stat.size - 1 }) as AsyncIterable<Buffer>) {
            const taken = piece.length > left ? piece.subarray(0, left) : piece
            left -= taken.length
            yield taken
          }
        }
        if (left > 0) yield Buffer.alloc(left)
        if (stat.size % BLOCK !== 0) yield Buffer.alloc(BLOCK - (stat.size % BLOCK))
      }
    }
  }
  yield* walk("")
  yield end()
}

/**
 * The tar.gz of a directory as a stream, entries relative to it (symlinks kept as symlinks);
 * an unreadable file fails the stream.
 *
 * @since 0.8.0
 */
export const packStream = (dir: string): Readable =>
  pipeline(Readable.from(tarOf(dir), { objectMode: false }), Zlib.createGzip(), () => {})

/**
 * The tar.gz of a directory, entries relative to it (symlinks kept as symlinks).
 *
 * @since 0.4.0
 */
export const packDirectory = (dir: string): Buffer => {
  const entries: Array<TarEntry> = []
  const walk = (relative: string) => {
    for (const dirent of Fs.readdirSync(Path.join(dir, relative), { withFileTypes: true })) {
      const path = relative === "" ? dirent.name : `${relative}/${dirent.name}`
      const full = Path.join(dir, path)
      if (dirent.isSymbolicLink()) entries.push({ type: "symlink", path, target: Fs.readlinkSync(full) })
      else if (dirent.isDirectory()) {
        entries.push({ type: "directory", path })
        walk(path)
      } else if (dirent.isFile()) entries.push({ type: "file", path, data: Fs.readFileSync(full), mode: Fs.statSync(full).mode & 0o777 })
    }
  }
  walk("")
  return Zlib.gzipSync(tar(entries))
}
