/**
 * ProcessManager I/O with real processes: whole lines under a burst, binary-exact bytes through
 * `cat`, large messages in both codecs, explicit loss for slow subscribers, log queries, log
 * rotation, stdin semantics, environment and data directory.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Stream } from "effect"
import type { ChannelEvent } from "../../src/process/ManagedProcess.ts"
import { sha256, socketPair } from "../support/bytes.ts"
import { child, manager, tempDir, until } from "../support/processManager.ts"

const text = (stream: Stream.Stream<Uint8Array>) => stream.pipe(Stream.decodeText(), Stream.mkString)

describe("ProcessManager I/O", () => {
  it.live("a burst of 200k lines arrives with every line whole, in order, stamped and numbered", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const burst = yield* pm.spawn(child("burst", "200000"))
      expect(yield* burst.wait).toMatchObject({ _tag: "Exited", code: 0 })
      const lines = yield* Stream.runCollect(burst.logs())
      expect(lines).toHaveLength(200_000)
      let cut = 0
      lines.forEach((line, i) => {
        if (line.text !== `line ${i} ${"x".repeat(i % 97)}` || line.seq !== i + 1 || line.stream !== "stdout") cut++
      })
      expect(cut).toBe(0)
      expect(lines.every((line, i) => i === 0 || line.time >= lines[i - 1]!.time)).toBe(true)
    }))

  it.live("50 MiB of random bytes through cat come back byte-exact", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const input = Crypto.randomBytes(50 * 1024 * 1024)
      const cat = yield* pm.spawn({ command: "cat", log: ["stderr"] })
      const output = yield* cat.stdout().pipe(
        Stream.runFold(() => ({ hash: Crypto.createHash("sha256"), bytes: 0 }), (acc, chunk) => {
          acc.hash.update(chunk)
          acc.bytes += chunk.length
          return acc
        }),
        Effect.forkChild
      )
      const chunks = Array.from({ length: input.length / 65536 }, (_, i) => input.subarray(i * 65536, (i + 1) * 65536))
      yield* Stream.run(Stream.fromIterable(chunks), cat.stdin())
      const { bytes, hash } = yield* Fiber.join(output)
      expect(bytes).toBe(input.length)
      expect(hash.digest("hex")).toBe(sha256(input))
      expect(yield* cat.wait).toMatchObject({ _tag: "Exited", code: 0 })
    }))

  it.live("data channels carry input (fd 4) and output (fd 5) byte-exact, apart from stdout", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const input = Crypto.randomBytes(8 * 1024 * 1024)
      // Copies fd 4 to fd 5 and says so on stdout.
      const script = "const n=require('net');const i=new n.Socket({fd:4,readable:true,writable:false});" +
        "const o=new n.Socket({fd:5,readable:false,writable:true});i.pipe(o);i.on('end',()=>console.log('copied'))"
      const copy = yield* pm.spawn({ command: process.execPath, args: ["-e", script], dataChannels: true })
      const output = yield* copy.output().pipe(Stream.runCollect, Effect.forkChild)
      const stdout = yield* text(copy.stdout()).pipe(Effect.forkChild)
      yield* Stream.run(Stream.make(input.subarray(0, 1 << 20), input.subarray(1 << 20)), copy.input())
      const received = Buffer.concat(yield* Fiber.join(output))
      expect(sha256(received)).toBe(sha256(input))
      expect(yield* Fiber.join(stdout)).toBe("copied\n")
      expect(yield* copy.wait).toMatchObject({ _tag: "Exited", code: 0 })
      // A process without data channels refuses input.
      const plain = yield* pm.spawn({ command: "cat" })
      const refused = yield* Stream.run(Stream.make(new Uint8Array(1)), plain.input()).pipe(Effect.flip)
      expect(refused).toMatchObject({ _tag: "StdinError", reason: "NotPiped" })
      yield* plain.kill
    }))

  it.live("piped straight into a socket: a reader that stops holds cat at the high-water mark, then gets every byte", () =>
    Effect.gen(function*() {
      const highWater = 1024 * 1024
      const pm = yield* manager({ outputHighWaterBytes: highWater })
      // More than the kernel's socket and pipe buffers hold between here and the reader.
      const input = Crypto.randomBytes(48 * 1024 * 1024)
      const [near, far] = yield* socketPair
      far.pause()
      const cat = yield* pm.spawn({ command: "cat", log: [] })
      // The backlog each chunk lands on: what the socket still queues, plus the chunk.
      let handed = 0
      let worstBacklog = 0
      const output = yield* Effect.forkChild(cat.pipeOutput("stdout", near, {
        written: (bytes) => {
          handed += bytes
          worstBacklog = Math.max(worstBacklog, near.writableLength + bytes)
        }
      }))
      const pumped = yield* Effect.forkChild(cat.pipeInput("stdin", near, { onError: (error) => error }))
      far.end(input)
      // The reader reads nothing: cat's output is held once the backlog reached the mark ...
      yield* until(() => near.writableLength >= highWater, "the reader's backlog to reach the mark")
      expect(handed).toBeLessThan(input.length)
      // ... and then everything comes, in order, once it reads.
      const received = yield* Effect.promise(() =>
        new Promise<Buffer>((resolve) => {
          const chunks: Array<Buffer> = []
          far.on("data", (chunk: Buffer) => chunks.push(chunk))
          far.on("end", () => resolve(Buffer.concat(chunks)))
          far.resume()
          // cat ends once its stdin ended and it wrote everything; the pipe then ends the socket.
          void Effect.runPromise(Fiber.join(output)).then(() => near.end())
        })
      )
      yield* Fiber.join(pumped)
      expect(received.length).toBe(input.length)
      expect(sha256(received)).toBe(sha256(input))
      // A chunk lands past the mark at most once more before the pause takes hold.
      expect(worstBacklog).toBeLessThanOrEqual(highWater + 2 * 65536)
      expect(yield* cat.wait).toMatchObject({ _tag: "Exited", code: 0 })
    }))

  it.live("a pipe into stdin that the process closes early fails, and leaves the rest of the socket unread", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const [near, far] = yield* socketPair
      const head = yield* pm.spawn({ command: "head", args: ["-c", "10"], log: [] })
      const pumped = yield* Effect.forkChild(head.pipeInput("stdin", near, { onError: (error) => error }))
      far.write(Crypto.randomBytes(16 * 1024 * 1024))
      expect(yield* Effect.flip(Fiber.join(pumped))).toMatchObject({ _tag: "StdinError", reason: "Closed" })
      // The writer learns it from the backpressure: nothing reads the socket any more.
      expect(near.readableFlowing).toBe(false)
      expect(yield* head.wait).toMatchObject({ _tag: "Exited", code: 0 })
    }))

  for (const codec of ["ndjson", "msgpack"] as const) {
    it.live(`1 MiB messages round-trip whole over ${codec}, in order`, () =>
      Effect.gen(function*() {
        const pm = yield* manager()
        const echo = yield* pm.spawn({ ...child("echo", "--ready"), messages: codec, readiness: { _tag: "Message", timeoutMs: 10_000 } })
        yield* echo.ready
        const received = yield* (yield* echo.messages).pipe(Stream.take(12), Stream.runCollect, Effect.forkChild)
        const sent = Array.from({ length: 12 }, (_, n) => ({ n, body: String(n % 10).repeat(n % 3 === 0 ? 1024 * 1024 : 10 + n) }))
        for (const message of sent) yield* echo.send(message)
        expect(yield* Fiber.join(received)).toEqual(sent.map((value) => ({ _tag: "Message", value })))
        yield* echo.kill
      }))
  }

  it.live("a slow subscriber gets an explicit Lost count at each gap; nothing vanishes silently", () =>
    Effect.gen(function*() {
      const pm = yield* manager({ messageBuffer: 100 })
      const flood = yield* pm.spawn({ ...child("flood", "5000"), messages: "ndjson" })
      // One reader keeps up; the other is held at its first message until the first has all.
      const count = (events: ReadonlyArray<ChannelEvent>) =>
        events.reduce((sum, event) => sum + (event._tag === "Lost" ? event.count : event._tag === "Message" ? 1 : 0), 0)
      const reconstructs = (events: ReadonlyArray<ChannelEvent>) => {
        let next = 0
        for (const event of events) {
          if (event._tag === "Lost") next += event.count
          else if (event._tag === "Message") {
            if ((event.value as { n: number }).n !== next) return false
            next++
          }
        }
        return next === 5000
      }
      const collect = (stream: Stream.Stream<ChannelEvent>) =>
        Effect.suspend(() => {
          const events: Array<ChannelEvent> = []
          return stream.pipe(
            Stream.takeUntil((event) => {
              events.push(event)
              return count(events) >= 5000
            }),
            Stream.runDrain,
            Effect.as(events)
          )
        })
      const gate = yield* Deferred.make<void>()
      const fast = yield* Effect.forkChild(collect(yield* flood.messages))
      const lagging = yield* Effect.forkChild(collect((yield* flood.messages).pipe(Stream.tap(() => Deferred.await(gate)))))
      yield* flood.send("go")
      const fastEvents = yield* Fiber.join(fast)
      yield* Deferred.succeed(gate, undefined)
      const lagEvents = yield* Fiber.join(lagging)
      expect(reconstructs(fastEvents)).toBe(true)
      expect(reconstructs(lagEvents)).toBe(true)
      expect(lagEvents.some((event) => event._tag === "Lost")).toBe(true)
      yield* flood.kill
    }))

  it.live("logs: tail, stream filter, time window, and follow until the process ends", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const script = "for i in 1 2 3 4 5 6; do echo out$i; echo err$i >&2; sleep 0.02; done"
      const talker = yield* pm.spawn({ command: "sh", args: ["-c", script] })
      const followed = yield* Stream.runCollect(talker.logs({ follow: true }))
      expect(followed.filter((line) => line.stream === "stdout").map((line) => line.text)).toEqual(
        ["out1", "out2", "out3", "out4", "out5", "out6"]
      )
      expect(followed.map((line) => line.seq)).toEqual(followed.map((_, i) => i + 1))
      expect(yield* talker.wait).toMatchObject({ _tag: "Exited", code: 0 })

      const tail = yield* Stream.runCollect(talker.logs({ tail: 2, streams: ["stderr"] }))
      expect(tail.map((line) => line.text)).toEqual(["err5", "err6"])
      const middle = followed[5]!.time
      const window = yield* Stream.runCollect(talker.logs({ since: middle, until: middle }))
      expect(window.length).toBeGreaterThan(0)
      expect(window.every((line) => line.time === middle)).toBe(true)
      // After the end, follow returns the history and completes.
      expect(yield* Stream.runCollect(talker.logs({ follow: true }))).toEqual(followed)
    }))

  it.live("logs rotate by size; queries read the ring and the files still on disk", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempDir()
      const pm = yield* manager({ stateDir, logFileBytes: 64 * 1024, logKeepFiles: 2, logRingLines: 100 })
      const burst = yield* pm.spawn(child("burst", "20000"))
      yield* burst.wait
      const files = Fs.readdirSync(Path.join(stateDir, "logs"))
      expect(files.sort()).toEqual([`${burst.id}.log`, `${burst.id}.log.1`, `${burst.id}.log.2`])
      for (const file of files) expect(Fs.statSync(Path.join(stateDir, "logs", file)).size).toBeLessThanOrEqual(64 * 1024)
      const kept = yield* Stream.runCollect(burst.logs())
      expect(kept.length).toBeGreaterThan(100)
      expect(kept.at(-1)!.seq).toBe(20000)
      expect(kept.every((line, i) => i === 0 || line.seq === kept[i - 1]!.seq + 1)).toBe(true)
      expect(kept.every((line) => line.text === `line ${line.seq - 1} ${"x".repeat((line.seq - 1) % 97)}`)).toBe(true)
      expect((yield* Stream.runCollect(burst.logs({ tail: 50 }))).map((line) => line.seq)).toEqual(
        Array.from({ length: 50 }, (_, i) => 19951 + i)
      )
      yield* pm.remove(burst.id)
      expect(Fs.readdirSync(Path.join(stateDir, "logs"))).toEqual([])
      // Rotated-out files were moved aside and deleted off the event loop.
      yield* until(() => Fs.readdirSync(Path.join(stateDir, "trash")).length === 0, "the rotated-out files to be deleted")
    }))

  it.live("a restart's process continues its log: numbering goes on, rotated files included, and queries read both", () =>
    Effect.gen(function*() {
      const pm = yield* manager({ logFileBytes: 64 * 1024, logKeepFiles: 2, logRingLines: 100 })
      const first = yield* pm.spawn({ ...child("burst", "5000"), logName: "restarted" })
      yield* first.wait
      yield* pm.remove(first.id, { keepLogs: true })
      const second = yield* pm.spawn({ ...child("burst", "3000"), logName: "restarted", continueLog: true })
      yield* second.wait
      const lines = yield* Stream.runCollect(second.logs())
      // What the rotation kept of the first run, then all of the second, numbered on.
      expect(lines.at(-1)!.seq).toBe(8000)
      expect(lines.every((line, i) => i === 0 || line.seq === lines[i - 1]!.seq + 1)).toBe(true)
      const text = (seq: number) => `line ${seq <= 5000 ? seq - 1 : seq - 5001} ${"x".repeat((seq <= 5000 ? seq - 1 : seq - 5001) % 97)}`
      expect(lines.every((line) => line.text === text(line.seq))).toBe(true)
      expect((yield* Stream.runCollect(second.logs({ tail: 3 }))).map((line) => line.seq)).toEqual([7998, 7999, 8000])
    }))

  it.live("a log named by its owner outlives its process for the retention time, then is swept; a reused name starts fresh", () =>
    Effect.gen(function*() {
      const stateDir = yield* tempDir()
      const pm = yield* manager({ stateDir, logRetentionMs: 300 })
      const first = yield* pm.spawn({ command: "sh", args: ["-c", "echo kept"], logName: "owner-1" })
      yield* first.wait
      yield* pm.remove(first.id, { keepLogs: true })
      expect((yield* Stream.runCollect(pm.pastLogs("owner-1"))).map((line) => line.text)).toEqual(["kept"])
      // The name is free again: a new process with it starts a fresh log.
      const second = yield* pm.spawn({ command: "sh", args: ["-c", "echo fresh"], logName: "owner-1" })
      expect(yield* Effect.flip(pm.spawn({ command: "true", logName: "owner-1" }))).toMatchObject({ reason: "InvalidSpec" })
      yield* second.wait
      expect((yield* Stream.runCollect(pm.pastLogs("owner-1"))).map((line) => line.text)).toEqual(["fresh"])
      yield* pm.remove(second.id, { keepLogs: true })
      // Past the retention, the sweep deletes the files.
      yield* until(() => !Fs.existsSync(Path.join(stateDir, "logs", "owner-1.log")), "the old log to be swept")
      expect(yield* Stream.runCollect(pm.pastLogs("owner-1"))).toEqual([])
    }))

  it.live("stdin: keep open or end; closed stdin is refused", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const cat = yield* pm.spawn({ command: "cat" })
      const encoder = new TextEncoder()
      yield* Stream.run(Stream.make(encoder.encode("first ")), cat.stdin({ end: false }))
      expect((yield* cat.info).status._tag).toBe("Ready")
      yield* Stream.run(Stream.make(encoder.encode("second")), cat.stdin())
      expect(yield* cat.wait).toMatchObject({ _tag: "Exited", code: 0 })
      expect(yield* text(cat.stdout())).toBe("first second")

      const closed = yield* pm.spawn({ command: "cat", stdin: "closed" })
      expect(yield* closed.wait).toMatchObject({ _tag: "Exited", code: 0 })
      const refused = yield* Effect.flip(Stream.run(Stream.make(encoder.encode("x")), closed.stdin()))
      expect(refused).toMatchObject({ _tag: "StdinError", reason: "NotPiped" })
      const ended = yield* Effect.flip(Stream.run(Stream.make(encoder.encode("x")), cat.stdin()))
      expect(ended).toMatchObject({ _tag: "StdinError", reason: "NotRunning" })
      const noChannel = yield* Effect.flip(cat.send({ hello: 1 }))
      expect(noChannel).toMatchObject({ _tag: "WriteMessageError", reason: "NoChannel" })
    }))

  it.live("environment, working directory and a data directory removed at the end unless kept", () =>
    Effect.gen(function*() {
      const pm = yield* manager()
      const cwd = yield* tempDir()
      process.env["SHARDHUB_TEST_INHERITED"] = "yes"
      const read = (spec: Parameters<typeof pm.spawn>[0]) =>
        Effect.gen(function*() {
          const handle = yield* pm.spawn(spec)
          const out = JSON.parse(yield* text(handle.stdout())) as { env: Record<string, string>; cwd: string }
          yield* handle.wait
          return { ...out, handle }
        })
      const inherited = yield* read({ ...child("env"), cwd, env: { set: { EXTRA: "1" }, remove: ["SHARDHUB_TEST_INHERITED"] } })
      expect(inherited.cwd).toBe(cwd)
      expect(inherited.env["EXTRA"]).toBe("1")
      expect(inherited.env["SHARDHUB_TEST_INHERITED"]).toBeUndefined()
      expect(inherited.env["PATH"]).toBe(process.env["PATH"])
      expect(inherited.env["SHARDHUB_PROCESS_ID"]).toBe(inherited.handle.id)
      expect(inherited.env["SHARDHUB_DATA_DIR"]).toBe((yield* inherited.handle.info).dataDir)
      yield* until(() => !Fs.existsSync(inherited.env["SHARDHUB_DATA_DIR"]!), "the data directory is removed")

      const clean = yield* read({ ...child("env"), env: { inherit: false, set: { ONLY: "this" } }, keepDataDir: true })
      expect(Object.keys(clean.env).sort()).toEqual(["ONLY", "SHARDHUB_DATA_DIR", "SHARDHUB_PROCESS_ID", "SHARDHUB_SUPERVISOR"])
      expect(Fs.statSync(clean.env["SHARDHUB_DATA_DIR"]!).isDirectory()).toBe(true)
      delete process.env["SHARDHUB_TEST_INHERITED"]
    }))
})
