/**
 * The log of one managed process: every stdout/stderr line with its sequence number, time and
 * stream, in a bounded in-memory ring (fast tails, the crash log) and in size-rotated files on
 * disk (history beyond the ring, kept after the process ends).
 *
 * File format: one line per log line, `<seq> <time ms> <o|e> <text>`. Text never contains a
 * newline (lines are assembled first), so nothing needs escaping and a torn last line after a
 * crash is simply skipped.
 *
 * Followers keep a cursor (the last sequence number they saw) and read forward from the ring,
 * or from disk when they fell behind it — so a slow follower misses nothing that is still on
 * disk, and no follower can slow down the process.
 *
 * @since 0.2.0
 */
import * as Fs from "node:fs"
import { Cause, Effect, Schema, Stream } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import { LogsError } from "./ProcessErrors.ts"

/**
 * Where a log line came from: the process's stdout or stderr, or `log` — a line it logged over
 * its message channel (`{"$shardhub":"log","level":…,"text":…}`), kept apart from its output.
 *
 * @since 0.2.0
 */
export const OutputStream = Schema.Literals(["stdout", "stderr", "log"])
/** @since 0.2.0 */
export type OutputStream = typeof OutputStream.Type

/**
 * One line of output.
 *
 * @since 0.2.0
 */
export const LogLine = Schema.Struct({
  /** 1, 2, 3, … per process, across restarts. */
  seq: Schema.Int,
  /** When the line was complete (ms since the epoch). */
  time: Schema.Number,
  stream: OutputStream,
  text: Schema.String
})
/** @since 0.2.0 */
export type LogLine = typeof LogLine.Type

/**
 * Which lines to read: from `streams` (default all), with `since <= time <= until`, only the
 * last `tail` of them; with `follow`, then every new line until the process has ended.
 *
 * @since 0.2.0
 */
export const LogsQuery = Schema.Struct({
  streams: Schema.optionalKey(Schema.Array(OutputStream)),
  since: Schema.optionalKey(Schema.Number),
  until: Schema.optionalKey(Schema.Number),
  tail: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  follow: Schema.optionalKey(Schema.Boolean)
})
/** @since 0.2.0 */
export type LogsQuery = typeof LogsQuery.Type

/**
 * @since 0.2.0
 */
export interface LogStore {
  readonly append: (stream: OutputStream, lines: ReadonlyArray<string>, time: number) => void
  /** No more lines will come; followers finish. */
  readonly end: () => void
  /** The last `count` lines of both streams. */
  readonly tail: (count: number) => ReadonlyArray<LogLine>
  readonly query: (query: LogsQuery) => Stream.Stream<LogLine, LogsError>
  /** Closes the file and deletes every log file. */
  readonly remove: () => void
}

/**
 * @since 0.2.0
 */
export interface LogStoreOptions {
  readonly id: string
  /** Path of the current log file; rotated files get `.1`, `.2`, … */
  readonly path: string
  readonly ringLines: number
  readonly fileBytes: number
  /** Rotated files kept beside the current one. */
  readonly keepFiles: number
}

const streamCode = (stream: OutputStream) => stream === "stdout" ? "o" : stream === "stderr" ? "e" : "l"
const streamOf = (code: string | undefined): OutputStream => code === "o" ? "stdout" : code === "e" ? "stderr" : "log"

const parseFile = (text: string, out: Array<LogLine>, after: number, upTo: number) => {
  let start = 0
  while (start < text.length) {
    let end = text.indexOf("\n", start)
    if (end === -1) break
    const a = text.indexOf(" ", start)
    const b = a === -1 ? -1 : text.indexOf(" ", a + 1)
    if (b !== -1 && b + 2 <= end) {
      const seq = Number(text.slice(start, a))
      if (seq > after && seq <= upTo) {
        out.push({
          seq,
          time: Number(text.slice(a + 1, b)),
          stream: streamOf(text[b + 1]),
          text: text.slice(b + 3, end)
        })
      }
    }
    start = end + 1
  }
}

/**
 * Opens (creates) a process' log.
 *
 * @since 0.2.0
 */
export const make = (options: LogStoreOptions): LogStore => {
  const ring: Array<LogLine | undefined> = new Array(options.ringLines)
  let seq = 0
  // Opened on the first line, so a process that prints nothing costs no file.
  let fd: number | undefined
  let closed = false
  let fileBytes = 0
  let ended = false
  const waiters = new Set<() => void>()

  const wakeAll = () => {
    const woken = [...waiters]
    waiters.clear()
    for (const wake of woken) wake()
  }

  const ringFirst = () => Math.max(1, seq - options.ringLines + 1)
  const fromRing = (after: number, upTo: number): Array<LogLine> => {
    const out: Array<LogLine> = []
    for (let s = Math.max(after + 1, ringFirst()); s <= upTo; s++) out.push(ring[s % options.ringLines]!)
    return out
  }
  const files = () => {
    const paths: Array<string> = []
    for (let n = options.keepFiles; n >= 1; n--) paths.push(`${options.path}.${n}`)
    paths.push(options.path)
    return paths
  }
  const fromDisk = (after: number, upTo: number) =>
    Effect.tryPromise({
      try: async () => {
        const out: Array<LogLine> = []
        for (const path of files()) {
          const text = await Fs.promises.readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
            if (error.code === "ENOENT") return ""
            throw error
          })
          parseFile(text, out, after, upTo)
        }
        return out
      },
      catch: (error) => new LogsError({ id: options.id, message: `cannot read the log: ${(error as Error).message}` })
    })
  /** Lines with `after < seq <= upTo`, from the ring when it still holds them. */
  const range = (after: number, upTo: number): Effect.Effect<Array<LogLine>, LogsError> =>
    after + 1 >= ringFirst() ? Effect.succeed(fromRing(after, upTo)) : fromDisk(after, upTo)

  const rotate = () => {
    if (fd !== undefined) Fs.closeSync(fd)
    for (let n = options.keepFiles; n >= 1; n--) {
      const from = n === 1 ? options.path : `${options.path}.${n - 1}`
      try {
        Fs.renameSync(from, `${options.path}.${n}`)
      } catch {
        // not there yet
      }
    }
    if (options.keepFiles === 0) Fs.rmSync(options.path, { force: true })
    fd = Fs.openSync(options.path, "a", 0o600)
    fileBytes = 0
  }

  const matches = (query: LogsQuery) => {
    const streams = query.streams
    return (line: LogLine) =>
      (streams === undefined || streams.includes(line.stream)) &&
      (query.since === undefined || line.time >= query.since) &&
      (query.until === undefined || line.time <= query.until)
  }

  const history = (query: LogsQuery, upTo: number) =>
    Effect.gen(function*() {
      const keep = matches(query)
      const inRing = fromRing(0, upTo).filter(keep)
      const first = ring[ringFirst() % options.ringLines]
      const complete = ringFirst() === 1 ||
        (query.since !== undefined && first !== undefined && first.time < query.since) ||
        (query.tail !== undefined && inRing.length >= query.tail)
      const lines = complete ? inRing : (yield* fromDisk(0, upTo)).filter(keep)
      return query.tail === undefined ? lines : lines.slice(Math.max(0, lines.length - query.tail))
    })

  const follow = (query: LogsQuery, from: number): Stream.Stream<LogLine, LogsError> =>
    Stream.fromPull(
      Effect.sync(() => {
        const keep = matches(query)
        let cursor = from
        let done = false
        const pull: Effect.Effect<NonEmptyReadonlyArray<LogLine>, LogsError | Cause.Done> = Effect.suspend(() => {
          if (done) return Cause.done()
          if (seq > cursor) {
            const upTo = seq
            return Effect.flatMap(range(cursor, upTo), (lines) => {
              cursor = upTo
              const kept = lines.filter(keep)
              if (query.until !== undefined && lines.some((line) => line.time > query.until!)) done = true
              return kept.length > 0 ? Effect.succeed(kept as unknown as NonEmptyReadonlyArray<LogLine>) : pull
            })
          }
          if (ended) return Cause.done()
          return Effect.callback<NonEmptyReadonlyArray<LogLine>, LogsError | Cause.Done>((resume) => {
            const wake = () => resume(pull)
            waiters.add(wake)
            return Effect.sync(() => waiters.delete(wake))
          })
        })
        return pull
      })
    )

  return {
    append(stream, lines, time) {
      if (lines.length === 0 || closed) return
      fd ??= Fs.openSync(options.path, "a", 0o600)
      const code = streamCode(stream)
      // One write per batch; a batch that would overflow the file is cut at a line boundary.
      let text = ""
      let bytes = 0
      for (const line of lines) {
        seq++
        ring[seq % options.ringLines] = { seq, time, stream, text: line }
        const entry = `${seq} ${time} ${code} ${line}\n`
        const size = Buffer.byteLength(entry)
        if (fileBytes + bytes + size > options.fileBytes && fileBytes + bytes > 0) {
          if (text.length > 0) Fs.writeSync(fd!, text)
          rotate()
          text = ""
          bytes = 0
        }
        text += entry
        bytes += size
      }
      Fs.writeSync(fd!, text)
      fileBytes += bytes
      wakeAll()
    },
    end() {
      ended = true
      closed = true
      if (fd !== undefined) Fs.closeSync(fd)
      fd = undefined
      wakeAll()
    },
    tail: (count) => fromRing(Math.max(0, seq - count), seq),
    query: (query) =>
      Stream.unwrap(Effect.map(Effect.suspend(() => {
        const upTo = seq
        return Effect.map(history(query, upTo), (lines) => ({ lines, upTo }))
      }), ({ lines, upTo }) => {
        const past = Stream.fromIterable(lines)
        return query.follow === true ? Stream.concat(past, follow(query, upTo)) : past
      })),
    remove() {
      ended = true
      closed = true
      if (fd !== undefined) Fs.closeSync(fd)
      if (fd !== undefined || seq > 0) for (const path of files()) Fs.rmSync(path, { force: true })
      fd = undefined
      wakeAll()
    }
  }
}
