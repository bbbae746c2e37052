/**
 * `npm run bench:package [-- --json]`: checking and unpacking a 512 MiB sequence package (a
 * .tar.gz made by the system's tar from a package.json, an index.js and a sparse 512 MiB file),
 * beside the raw OS baseline measured in the same run: `tar -xzf` of the same archive.
 *
 * Also the longest stall of this process's event loop while shardhub unpacks (timer drift,
 * sampled every 10 ms), beside the stall of the same archive gunzipped in one synchronous call
 * (what unpacking looked like before it was streamed). On a runner that event loop refreshes
 * the shard locks: a stall longer than the lock expiration loses every shard of the runner.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Zlib from "node:zlib"
import { Effect } from "effect"
import * as Package from "../src/sequence/Package.ts"
import { printTable, runMain } from "./support.ts"

const json = process.argv.includes("--json")
const SIZE = 512 * 1024 * 1024 - 64 * 1024

/** Runs `work` while sampling the event loop; resolves with its time and the longest stall. */
const timed = async (work: () => Promise<unknown> | unknown) => {
  let stall = 0
  let last = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    stall = Math.max(stall, now - last - 10)
    last = now
  }, 10)
  const started = performance.now()
  await work()
  const ms = performance.now() - started
  // One more tick: a synchronous stall shows when the loop next turns.
  await new Promise((resolve) => setTimeout(resolve, 20))
  clearInterval(timer)
  return { ms, stall }
}

const main = async () => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-bench-package-"))
  try {
    const source = Path.join(dir, "package")
    Fs.mkdirSync(source)
    Fs.writeFileSync(Path.join(source, "package.json"), JSON.stringify({ name: "big", main: "index.js" }))
    Fs.writeFileSync(Path.join(source, "index.js"), "module.exports = (input) => input\n")
    Fs.writeFileSync(Path.join(source, "big.bin"), "")
    Fs.truncateSync(Path.join(source, "big.bin"), SIZE)
    const archive = Path.join(dir, "package.tar.gz")
    ChildProcess.execFileSync("tar", ["-czf", archive, "-C", source, "."])

    const raw = await timed(() => {
      Fs.mkdirSync(Path.join(dir, "raw"))
      ChildProcess.execFileSync("tar", ["-xzf", archive, "-C", Path.join(dir, "raw")])
    })
    const checked = await timed(() => Effect.runPromise(Package.check(Fs.createReadStream(archive))))
    const unpacked = await timed(() => Effect.runPromise(Package.unpack(Fs.createReadStream(archive), Path.join(dir, "shardhub"))))
    const blocking = await timed(() => Zlib.gunzipSync(Fs.readFileSync(archive), { maxOutputLength: 1024 * 1024 * 1024 }).length)

    const result = {
      raw_unpack_ms: raw.ms,
      unpack_ms: unpacked.ms,
      check_ms: checked.ms,
      unpack_stall_ms: unpacked.stall,
      check_stall_ms: checked.stall,
      sync_gunzip_stall_ms: blocking.stall
    }
    if (json) {
      console.log(JSON.stringify(result))
      return
    }
    printTable(`512 MiB package (${Os.cpus().length} cores, node ${process.version})`, [
      ["unpack (raw: tar -xzf)", raw.ms, unpacked.ms, "ms"],
      ["check only, writes nothing (raw: tar -xzf)", raw.ms, checked.ms, "ms"],
      ["longest event-loop stall (raw: one gunzipSync)", blocking.stall, Math.max(unpacked.stall, checked.stall), "ms"]
    ])
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

runMain(main)
