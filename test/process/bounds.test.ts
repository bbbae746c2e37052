/**
 * What keeps one process from filling its runner's memory: the log ring is bounded by bytes
 * (with lines not yet on disk still readable, and read back exactly as they were written), and
 * the last-event table by names and bytes.
 */
import { Effect, Stream } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterEach, describe, expect, it, vi } from "vitest"
import * as LastEvents from "../../src/instance/LastEvents.ts"
import { makeLineAssembler } from "../../src/process/Lines.ts"
import * as LogStore from "../../src/process/LogStore.ts"

const dirs: Array<string> = []
afterEach(() => {
  for (const dir of dirs.splice(0)) Fs.rmSync(dir, { recursive: true, force: true })
})

const store = (options: Partial<LogStore.LogStoreOptions> = {}) => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-logstore-"))
  dirs.push(dir)
  return LogStore.make({
    id: "p",
    path: Path.join(dir, "p.log"),
    ringLines: 10_000,
    ringBytes: 256 * 1024,
    fileBytes: 10 * 1024 * 1024,
    keepFiles: 3,
    ...options
  })
}

const query = (logs: LogStore.LogStore, q: LogStore.LogsQuery) => Effect.runPromise(Stream.runCollect(logs.query(q)))

describe("bounded buffers", () => {
  it("a flood of 64 KiB lines keeps the ring within its bytes, and every line stays readable in order", async () => {
    // Files big enough to keep all 125 MiB: rotation is not what this is about.
    const logs = store({ fileBytes: 256 * 1024 * 1024 })
    const line = (i: number) => `${i}:`.padEnd(64 * 1024, "x")
    for (let batch = 0; batch < 100; batch++) {
      logs.append("stdout", Array.from({ length: 20 }, (_, i) => line(batch * 20 + i)), Date.now())
    }
    // The ring keeps only what fits in 256 KiB: the crash log's tail is short, not 2,000 lines long.
    expect(logs.tail(2000).length).toBeLessThanOrEqual(4)
    expect(logs.tail(1)[0]!.text).toBe(line(1999))
    // Right after the appends (disk writes still queued), queries see every line once, in order.
    const last = await query(logs, { tail: 50 })
    expect(last.map((l) => l.seq)).toEqual(Array.from({ length: 50 }, (_, i) => 1951 + i))
    expect(last.every((l) => l.text === line(l.seq - 1))).toBe(true)
    logs.end()
    const all = await query(logs, {})
    expect(all.map((l) => l.seq)).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1))
  })

  it("output bytes of any kind (invalid UTF-8, CRLF, multi-byte cut anywhere) read back the same from the ring and from disk", async () => {
    const next = ((seed) => () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648)(11)
    const parts = ["plain", "é€😀", "\r", "\xff\xfe", "\x00", "\u0007", "tab\t", "😀".slice(0, 1)]
    const output = Buffer.concat(Array.from({ length: 3000 }, () => {
      const line = Array.from({ length: Math.floor(next() * 6) }, () => parts[Math.floor(next() * parts.length)]!).join("")
      return Buffer.concat([Buffer.from(line, next() < 0.1 ? "latin1" : "utf8"), Buffer.from(next() < 0.2 ? "\r\n" : "\n")])
    }))
    // What a reader must get: each line decoded alone, a trailing CR dropped.
    const expected = output.toString("latin1").split("\n").slice(0, -1).map((line) => {
      const bytes = Buffer.from(line, "latin1")
      return (bytes.at(-1) === 13 ? bytes.subarray(0, -1) : bytes).toString("utf8")
    })
    const logs = store({ ringLines: 500 })
    const assembler = makeLineAssembler(64 * 1024)
    for (let at = 0; at < output.length;) {
      const size = 1 + Math.floor(next() * 700)
      logs.append("stdout", assembler.push(output.subarray(at, at + size)), Date.now())
      at += size
    }
    logs.append("stdout", assembler.flush(), Date.now())
    // The ring holds the last 500; everything before comes from disk.
    expect(logs.tail(500).map((line) => line.text)).toEqual(expected.slice(-500))
    const all = await query(logs, {})
    expect(all.map((line) => line.text)).toEqual(expected)
    expect(all.map((line) => line.seq)).toEqual(expected.map((_, i) => i + 1))
    logs.end()
  })

  it("the ring grows with the lines that come, up to its line bound, and keeps the newest in order across every growth", () => {
    // 1,000 is not a doubling of the ring's first size: the last growth stops short of double.
    const logs = store({ ringLines: 1000 })
    let total = 0
    for (let batch = 0; total < 3000; batch++) {
      const count = 1 + ((batch * 37) % 97)
      logs.append("stdout", Array.from({ length: count }, (_, i) => `line ${total + i + 1}`), Date.now())
      total += count
      const held = logs.tail(5000)
      expect(held.map((line) => line.seq)).toEqual(
        Array.from({ length: Math.min(total, 1000) }, (_, i) => total - Math.min(total, 1000) + i + 1)
      )
      expect(held.every((line) => line.text === `line ${line.seq}`)).toBe(true)
    }
    logs.end()
  })

  it("keeps rotating files in order: a reader far behind gets what the kept files hold, in order, without a gap", async () => {
    const logs = store({ ringLines: 16, ringBytes: 4096, fileBytes: 4096, keepFiles: 2 })
    for (let i = 0; i < 400; i++) logs.append("stdout", [`line ${i} `.padEnd(100, ".")], Date.now())
    logs.end()
    const kept = await query(logs, {})
    const seqs = kept.map((l) => l.seq)
    // 3 files of 4 KiB hold about 100 lines of about 120 bytes, ending at the last.
    expect(seqs.at(-1)).toBe(400)
    expect(seqs.length).toBeGreaterThan(60)
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => 400 - seqs.length + 1 + i))
    const window = await query(logs, { tail: 10 })
    expect(window.map((l) => l.seq)).toEqual(Array.from({ length: 10 }, (_, i) => 391 + i))
  })

  it("asks for pressure while the disk is far behind, and lets go once it caught up", async () => {
    const calls: Array<boolean> = []
    const logs = store({ pressure: (paused) => calls.push(paused) })
    // 32 MiB in one go: far more than the disk takes before the event loop turns.
    for (let i = 0; i < 512; i++) logs.append("stdout", ["z".repeat(64 * 1024)], Date.now())
    expect(calls).toEqual([true])
    await vi.waitFor(() => expect(calls).toEqual([true, false]), { timeout: 30_000 })
    expect((await query(logs, {})).length).toBe(512)
  })

  it("a follower that fell behind the ring reads on from disk without a gap", async () => {
    const logs = store({ ringLines: 8, ringBytes: 1024 })
    const seen: Array<number> = []
    const following = Effect.runPromise(Stream.runForEach(logs.query({ follow: true }), (l) => Effect.sync(() => seen.push(l.seq))))
    for (let i = 0; i < 500; i++) logs.append(i % 2 === 0 ? "stdout" : "stderr", [`line ${i}`, `more ${i}`], Date.now())
    logs.end()
    await following
    expect(seen).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1))
  })

  it("10,000 event names keep at most the configured names and bytes, the newest first; overlong names are refused", () => {
    const events = LastEvents.make({ maxNames: 1000, maxBytes: 64 * 1024, maxNameLength: 256 })
    for (let i = 0; i < 10_000; i++) events.set({ name: `event-${i}`, data: { i } })
    expect(events.size()).toBe(1000)
    expect(events.get("event-9999")).toEqual({ name: "event-9999", data: { i: 9999 } })
    expect(events.get("event-0")).toBeUndefined()
    // Re-emitting an old name makes it the newest: it survives the next evictions.
    events.set({ name: "event-9000", data: "again" })
    for (let i = 10_000; i < 10_999; i++) events.set({ name: `event-${i}`, data: i })
    expect(events.get("event-9000")).toEqual({ name: "event-9000", data: "again" })
    // Bytes bound it too: big events push out older ones.
    for (let i = 0; i < 20; i++) events.set({ name: `big-${i}`, data: "x".repeat(16 * 1024) })
    expect(events.bytes()).toBeLessThanOrEqual(64 * 1024)
    expect(events.get("big-19")).toBeDefined()
    expect(events.get("big-0")).toBeUndefined()
    // One event bigger than the whole budget is still the last of its name.
    events.set({ name: "huge", data: "y".repeat(128 * 1024) })
    expect(events.get("huge")).toBeDefined()
    expect(events.size()).toBe(1)
    expect(events.set({ name: "n".repeat(257), data: 1 })).toBe(false)
  })
})
