/**
 * Package checks against hostile and broken archives: each is refused with a clear reason
 * before anything is written, and nothing ever lands outside the target directory.
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Zlib from "node:zlib"
import { afterEach, describe, expect, it } from "vitest"
import * as Package from "../../src/sequence/Package.ts"
import * as Pack from "../../src/sequence/Pack.ts"
import { tar, type TarEntry } from "../../src/sequence/Pack.ts"

const pkg = (main = "index.js") => ({ type: "file" as const, path: "package.json", data: JSON.stringify({ main }) })
const index = { type: "file" as const, path: "index.js", data: "module.exports = (input) => input\n" }
const gz = (entries: ReadonlyArray<TarEntry>) => Zlib.gzipSync(tar(entries))

let sandbox = ""
afterEach(() => {
  if (sandbox !== "") Fs.rmSync(sandbox, { recursive: true, force: true })
})

/** Reads and (if it passed) unpacks into `sandbox/pkg`; returns the error, and every path under the sandbox. */
const attempt = async (archive: Uint8Array, limits?: Package.Limits) => {
  sandbox = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-package-"))
  const target = Path.join(sandbox, "pkg")
  const exit = await Effect.runPromiseExit(Package.unpack(Package.fromBytes(archive), target, limits))
  const written = Fs.readdirSync(sandbox, { recursive: true }).map(String).sort()
  return { exit, written, target }
}

const refused = async (archive: Uint8Array, limits?: Package.Limits) => {
  const { exit, written } = await attempt(archive, limits)
  expect(written).toEqual([])
  if (exit._tag !== "Failure") throw new Error("the archive was accepted")
  const error = exit.cause.reasons[0]
  return (error as { error: Package.PackageError }).error
}

describe("sequence packages", () => {
  it("unpacks a good package: files, directories, modes (private to the runner's user), an inside symlink, long names", async () => {
    const long = `deep/${"d".repeat(120)}/file.txt`
    const { exit, target } = await attempt(gz([
      pkg("lib/main.js"),
      { type: "directory", path: "lib" },
      { type: "file", path: "lib/main.js", data: "module.exports = () => 1\n", mode: 0o4755 },
      { type: "file", path: "config.env", data: "SECRET=1\n", mode: 0o644 },
      { type: "file", path: long, data: "long" },
      { type: "symlink", path: "entry.js", target: "lib/main.js" }
    ]))
    expect(exit._tag).toBe("Success")
    expect(Fs.readFileSync(Path.join(target, "lib/main.js"), "utf8")).toBe("module.exports = () => 1\n")
    // setuid is dropped, and nothing is readable by other users: a package may carry secrets.
    expect(Fs.statSync(Path.join(target, "lib/main.js")).mode & 0o7777).toBe(0o700)
    expect(Fs.statSync(Path.join(target, "config.env")).mode & 0o7777).toBe(0o600)
    for (const dir of [target, Path.join(target, "lib"), Path.join(target, "deep")]) expect(Fs.statSync(dir).mode & 0o7777).toBe(0o700)
    expect(Fs.readFileSync(Path.join(target, long), "utf8")).toBe("long")
    expect(Fs.readlinkSync(Path.join(target, "entry.js"))).toBe("lib/main.js")
  })

  it("reads the manifest: engine, args, name, version", async () => {
    const { manifest } = await Effect.runPromise(Package.check(Package.fromBytes(gz([
      { type: "file", path: "package.json", data: JSON.stringify({ name: "p", version: "1.2.3", main: "./run.py", engines: { python3: "3.9" }, args: [1, "a"] }) },
      { type: "file", path: "run.py", data: "async def run(context, input): pass\n" }
    ]))))
    expect(manifest).toEqual({ name: "p", version: "1.2.3", main: "run.py", engine: "python3", args: [1, "a"] })
  })

  it("refuses ../ paths, absolute paths and symlinks leaving the package, writing nothing", async () => {
    expect(await refused(gz([pkg(), index, { type: "file", path: "../../etc/x", data: "owned" }]))).toMatchObject({ reason: "PathTraversal" })
    expect(await refused(gz([pkg(), index, { type: "file", path: "a/../../x", data: "owned" }]))).toMatchObject({ reason: "PathTraversal" })
    expect(await refused(gz([pkg(), index, { type: "file", path: "/tmp/shardhub-owned", data: "owned" }]))).toMatchObject({ reason: "AbsolutePath" })
    expect(await refused(gz([pkg(), index, { type: "symlink", path: "out", target: "../../../etc" }]))).toMatchObject({ reason: "SymlinkEscape" })
    expect(await refused(gz([pkg(), index, { type: "symlink", path: "abs", target: "/etc/passwd" }]))).toMatchObject({ reason: "SymlinkEscape" })
    // A symlink that stays inside, used to write through: refused too.
    expect(await refused(gz([pkg(), index, { type: "symlink", path: "lib", target: "." }, { type: "file", path: "lib/x", data: "x" }])))
      .toMatchObject({ reason: "SymlinkEscape" })
    expect(await refused(gz([pkg(), index, { type: "hardlink", path: "h", target: "/etc/passwd" }]))).toMatchObject({ reason: "UnsupportedEntry" })
    expect(Fs.existsSync("/tmp/shardhub-owned")).toBe(false)
  })

  it("follows symlink chains as the kernel does: a chain that resolves outside is refused, whatever each link looks like", async () => {
    const link = (path: string, target: string) => ({ type: "symlink" as const, path, target })
    // `L/..` is `.` as text, but the kernel resolves L (the root) first: `esc` is the root's parent.
    expect(await refused(gz([pkg(), index, link("L", "."), link("esc", "L/..")]))).toMatchObject({ reason: "SymlinkEscape" })
    expect(await refused(gz([pkg(), index, { type: "directory", path: "d" }, link("d/L", "."), link("d/esc", "L/../..")])))
      .toMatchObject({ reason: "SymlinkEscape" })
    // Through a chain of links, each pointing at the next.
    expect(await refused(gz([pkg(), index, link("a", "b"), link("b", "c/.."), link("c", "."), link("out", "a/x")])))
      .toMatchObject({ reason: "SymlinkEscape" })
    // A loop never resolves.
    expect(await refused(gz([pkg(), index, link("p", "q"), link("q", "p")]))).toMatchObject({ reason: "SymlinkEscape" })
    // Chains that stay inside are kept, even when the text alone would look like an escape.
    const { entries } = await Effect.runPromise(Package.check(Package.fromBytes(gz([
      pkg(),
      index,
      { type: "directory", path: "lib/deep" },
      link("here", "lib/deep"),
      link("up", "here/.."),
      link("dangling", "lib/none")
    ]))))
    expect(entries.filter((entry) => entry.type === "symlink").map((entry) => entry.path)).toEqual(["here", "up", "dangling"])
  })

  it("refuses a missing or bad main, a missing or invalid package.json, and two engines", async () => {
    expect((await refused(gz([pkg("app.js"), index]))).message).toMatch(/Sequence entrypoint path "app.js" is invalid.*Check `main` field in package.json/)
    expect(await refused(gz([pkg("../outside.js"), index]))).toMatchObject({ reason: "InvalidMain" })
    expect(await refused(gz([{ type: "file", path: "package.json", data: "{}" }, index]))).toMatchObject({ reason: "InvalidMain" })
    expect(await refused(gz([index]))).toMatchObject({ reason: "NoPackageJson" })
    expect(await refused(gz([{ type: "file", path: "package.json", data: "{ not json" }, index]))).toMatchObject({ reason: "InvalidPackageJson" })
    expect(await refused(gz([{ type: "file", path: "package.json", data: JSON.stringify({ main: "index.js", engines: { node: "1", python3: "3" } }) }, index])))
      .toMatchObject({ reason: "InvalidPackageJson" })
  })

  it("bounds tar metadata: a name past PATH_MAX, a pax header over 64 KiB, names that add up past 1 MiB", async () => {
    const dir = (path: string) => ({ type: "directory" as const, path })
    expect((await refused(gz([pkg(), index, dir("a/".repeat(2100))]))).message).toMatch(/a path is longer than 4096 bytes/)
    expect((await refused(gz([pkg(), index, { type: "symlink", path: "l", target: "a/".repeat(2100) }]))).message).toMatch(/no valid target/)
    // The attack that took a gateway to 0.74 GB: each entry named by a 1 MiB pax path.
    expect((await refused(gz([pkg(), index, ...Array.from({ length: 4 }, (_, i) => dir(`${i}${"a".repeat(1024 * 1024)}`))]))).message)
      .toMatch(/a tar metadata entry of \d+ bytes is over the limit of 65536/)
    const many = Array.from({ length: 300 }, (_, i) => dir(`${i}/${"a/".repeat(1990)}`))
    const checked = await Effect.runPromise(Effect.flip(Package.check(Package.fromBytes(gz([pkg(), index, ...many])), { maxUnpackedBytes: 1 << 30, maxEntries: 10_000 })))
    expect(checked.message).toMatch(/the package's tar metadata is over the limit of 1048576 bytes/)
  })

  it("refuses archives over the limits, corrupt and truncated ones", async () => {
    const big = { type: "file" as const, path: "big.bin", data: Buffer.alloc(2 * 1024 * 1024) }
    expect(await refused(gz([pkg(), index, big]), { maxUnpackedBytes: 1024 * 1024, maxEntries: 100 })).toMatchObject({ reason: "TooLarge" })
    const many = Array.from({ length: 50 }, (_, i) => ({ type: "file" as const, path: `f${i}`, data: "x" }))
    expect(await refused(gz([pkg(), index, ...many]), { maxUnpackedBytes: 1 << 30, maxEntries: 20 })).toMatchObject({ reason: "TooManyFiles" })
    // Gzip bombs stop at the limit instead of filling memory: a file declared huge, and a stream
    // of zeros (an end-of-archive block: no package.json).
    const bomb = Zlib.gzipSync(tar([pkg(), index, { type: "file", path: "bomb.bin", data: Buffer.alloc(300 * 1024 * 1024) }]))
    expect(await refused(bomb, { maxUnpackedBytes: 16 * 1024 * 1024, maxEntries: 100 })).toMatchObject({ reason: "TooLarge" })
    expect(await refused(Zlib.gzipSync(Buffer.alloc(300 * 1024 * 1024)), { maxUnpackedBytes: 16 * 1024 * 1024, maxEntries: 100 }))
      .toMatchObject({ reason: "NoPackageJson" })
    expect(await refused(Buffer.from("definitely not a tarball, but long enough to hold a header block".repeat(20)))).toMatchObject({ reason: "Corrupt" })
    const whole = tar([pkg(), index])
    expect(await refused(Zlib.gzipSync(whole.subarray(0, 700)))).toMatchObject({ reason: "Corrupt" })
    expect(await refused(whole.subarray(0, 100))).toMatchObject({ reason: "Corrupt" })
  })
})

describe("packing a directory", () => {
  it("streams a big directory: its files read in pieces, the event loop free, memory flat, the package well-formed", async () => {
    sandbox = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-pack-"))
    const dir = Path.join(sandbox, "app")
    Fs.mkdirSync(Path.join(dir, "node_modules", "big"), { recursive: true })
    Fs.writeFileSync(Path.join(dir, "package.json"), JSON.stringify({ main: "index.js" }))
    Fs.writeFileSync(Path.join(dir, "index.js"), "module.exports = (input) => input\n")
    Fs.writeFileSync(Path.join(dir, "node_modules", "big", `${"long-name-".repeat(12)}.js`), "x")
    // 400 MiB (sparse: no disk), far more than a pack in memory should ever hold.
    const big = 400 * 1024 * 1024
    Fs.writeFileSync(Path.join(dir, "node_modules", "big", "blob.bin"), "")
    Fs.truncateSync(Path.join(dir, "node_modules", "big", "blob.bin"), big)
    const before = process.memoryUsage().rss
    let peak = before
    let ticks = 0
    const sampler = setInterval(() => {
      ticks++
      peak = Math.max(peak, process.memoryUsage().rss)
    }, 5)
    try {
      const pkg = await Effect.runPromise(Package.check(Pack.packStream(dir), { maxUnpackedBytes: 512 * 1024 * 1024, maxEntries: 100 }))
      expect(pkg.manifest.main).toBe("index.js")
      expect(pkg.entries.find((entry) => entry.path === "node_modules/big/blob.bin")).toMatchObject({ type: "file", size: big })
      expect(pkg.entries.map((entry) => entry.path)).toContain(`node_modules/big/${"long-name-".repeat(12)}.js`)
    } finally {
      clearInterval(sampler)
    }
    // The timer ran while the archive was made (a synchronous pack would have held the loop
    // for all of it), and the process never held the 400 MiB.
    expect(ticks).toBeGreaterThan(0)
    expect(peak - before).toBeLessThan(big / 4)
  })
})
