/**
 * The log of one managed process: every stdout/stderr line with its sequence number, time and
 * stream, in an in-memory ring bounded by lines and by bytes (fast tails, the crash log) and in
 * size-rotated files on disk (history beyond the ring, kept after the process ends).
 *
 * Writes to disk are asynchronous and batched (one write per appended batch, in order, off the
 * event loop): a slow disk never stalls the runner. While the disk is more than
 * `maxBacklogBytes` behind, the store asks for `pressure` (the process's output is paused, as
 * for a slow reader) until it caught up. A reader that needs lines the ring gave up waits for
 * the disk to have them.
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
import type { LineSpans } from "./Lines.ts"
import { LogsError } from "./ProcessErrors.ts"

/**
 * Where a log line came from: the process's stdout or stderr, or `log` — a line it logged over
 * its message channel (`{"$shardhub":"log","level":…,"text":…}`), kept apart from its output.
 *
 * @since 0.2.0
 */
export const LogSource = Schema.Literals(["stdout", "stderr", "log"])
/** @since 0.2.0 */
export type LogSource = typeof LogSource.Type

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
  stream: LogSource,
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
  streams: Schema.optionalKey(Schema.Array(LogSource)),
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
  /** Appends lines: text, or spans of UTF-8 bytes (written as they are, decoded when read). */
  readonly append: (stream: LogSource, lines: ReadonlyArray<string> | LineSpans, time: number) => void
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
  /** Bytes of text the ring holds at most: the oldest lines leave first. */
  readonly ringBytes: number
  readonly fileBytes: number
  /** Rotated files kept beside the current one. */
  readonly keepFiles: number
  /** Called with true while the disk is too far behind (pause the output), then false. */
  readonly pressure?: (paused: boolean) => void
  /** Continue the files already at `path` (a restarted process): their lines come first. */
  readonly resume?: boolean
  /**
   * Takes away the oldest rotated file (default: deletes it here). Deleting a file of
   * `fileBytes` frees its blocks, milliseconds of kernel time a runner moves off its loop.
   */
  readonly discard?: ((path: string) => void) | undefined
}

/** Bytes handed to the disk and not yet written past which the store asks for pressure. */
const maxBacklogBytes = 8 * 1024 * 1024

/**
 * A line in the ring: where its text is in the bytes it was written to disk with, decoded only
 * when it is read (most lines never are).
 */
interface Entry {
  readonly seq: number
  readonly time: number
  readonly stream: LogSource
  readonly batch: Buffer
  readonly start: number
  readonly end: number
}

/** What a line in the ring is counted as: its text and the object around it. */
const cost = (entry: Entry) => entry.end - entry.start + 64

const lineOf = (entry: Entry): LogLine => ({
  seq: entry.seq,
  time: entry.time,
  stream: entry.stream,
  text: entry.batch.toString("utf8", entry.start, entry.end)
})

const spansOf = (lines: ReadonlyArray<string>): LineSpans => {
  const bounds: Array<number> = []
  let at = 0
  for (const line of lines) {
    const size = Buffer.byteLength(line)
    bounds.push(at, at + size)
    at += size
  }
  return { bytes: Buffer.from(lines.join("")), bounds }
}

const streamCode = (stream: LogSource) => stream === "stdout" ? "o" : stream === "stderr" ? "e" : "l"
const streamOf = (code: string | undefined): LogSource => code === "o" ? "stdout" : code === "e" ? "stderr" : "log"

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

const matcher = (query: LogsQuery) => {
  const streams = query.streams
  return (line: LogLine) =>
    (streams === undefined || streams.includes(line.stream)) &&
    (query.since === undefined || line.time >= query.since) &&
    (query.until === undefined || line.time <= query.until)
}

const filesOf = (path: string, keepFiles: number) => {
  const paths: Array<string> = []
  for (let n = keepFiles; n >= 1; n--) paths.push(`${path}.${n}`)
  paths.push(path)
  return paths
}

/** The sequence number of a file's first and last line (`undefined` for an empty or missing file). */
const seqRange = (path: string): { readonly first: number; readonly last: number } | undefined => {
  let fd: number
  try {
    fd = Fs.openSync(path, "r")
  } catch {
    return undefined
  }
  try {
    const size = Fs.fstatSync(fd).size
    const head = Buffer.alloc(Math.min(size, 64))
    Fs.readSync(fd, head, 0, head.length, 0)
    // The last line is at most a line's length from the end; its start is after the previous "\n".
    const tailBytes = Math.min(size, 1024 * 1024)
    const tail = Buffer.alloc(tailBytes)
    Fs.readSync(fd, tail, 0, tailBytes, size - tailBytes)
    const text = tail.toString("utf8")
    const end = text.lastIndexOf("\n")
    const start = text.lastIndexOf("\n", end - 1) + 1
    const first = Number(head.toString("latin1").split(" ", 1)[0])
    const last = Number(text.slice(start, text.indexOf(" ", start)))
    return Number.isInteger(first) && Number.isInteger(last) && end > 0 ? { first, last } : undefined
  } finally {
    Fs.closeSync(fd)
  }
}

/**
 * The lines of a log no process writes any more, from its files (`follow` ends at once).
 *
 * @since 0.5.0
 */
export const past = (
  options: Pick<LogStoreOptions, "id" | "path" | "keepFiles">,
  query: LogsQuery
): Stream.Stream<LogLine, LogsError> =>
  Stream.unwrap(Effect.tryPromise({
    try: async () => {
      const lines: Array<LogLine> = []
      for (const path of filesOf(options.path, options.keepFiles)) {
        const text = await Fs.promises.readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
          if (error.code === "ENOENT") return ""
          throw error
        })
        parseFile(text, lines, 0, Number.POSITIVE_INFINITY)
      }
      const kept = lines.filter(matcher(query))
      return Stream.fromIterable(query.tail === undefined ? kept : kept.slice(Math.max(0, kept.length - query.tail)))
    },
    catch: (error) => new LogsError({ id: options.id, message: `cannot read the log: ${(error as Error).message}` })
  }))

/**
 * Opens (creates) a process' log.
 *
 * @since 0.2.0
 */
export const make = (options: LogStoreOptions): LogStore => {
  // The ring grows (doubling) up to `ringLines` slots as lines come: a process that prints
  // little costs little (a full-size ring is 80 KB of slots per process).
  let capacity = Math.min(64, options.ringLines)
  let ring: Array<Entry | undefined> = new Array(capacity)
  let seq = 0
  // The oldest line the ring holds, and the bytes of text it holds.
  let first = 1
  let held = 0
  // Opened on the first line, so a process that prints nothing costs no file.
  let out: Fs.WriteStream | undefined
  // Every line up to this one is on disk (or was given up: see `write`).
  let writtenSeq = 0
  let diskFailed = false
  const diskWaiters = new Set<() => boolean>()
  let pressed = false
  const release = () => {
    if (!pressed) return
    pressed = false
    options.pressure?.(false)
  }
  let closed = false
  let fileBytes = 0
  let ended = false
  const waiters = new Set<() => void>()

  const wakeAll = () => {
    const woken = [...waiters]
    waiters.clear()
    for (const wake of woken) wake()
  }

  const evict = () => {
    const slot = first % capacity
    held -= cost(ring[slot]!)
    ring[slot] = undefined
    first++
  }
  const keep = (line: Entry) => {
    if (line.seq - first >= capacity) {
      if (capacity < options.ringLines) grow(line.seq)
      else evict()
    }
    ring[line.seq % capacity] = line
    held += cost(line)
    while (held > options.ringBytes && first < line.seq) evict()
  }

  /** Doubles the ring (up to `ringLines`), keeping the lines before `seq` in their new slots. */
  const grow = (seq: number) => {
    const next = Math.min(capacity * 2, options.ringLines)
    const grown: Array<Entry | undefined> = new Array(next)
    for (let s = first; s < seq; s++) grown[s % next] = ring[s % capacity]
    ring = grown
    capacity = next
  }
  const fromRing = (after: number, upTo: number): Array<LogLine> => {
    const lines: Array<LogLine> = []
    for (let s = Math.max(after + 1, first); s <= upTo; s++) lines.push(lineOf(ring[s % capacity]!))
    return lines
  }
  const files = () => filesOf(options.path, options.keepFiles)
  // The first line of the current file, and of each rotated one (`.1` first).
  let currentStart = 1
  let rotatedStarts: Array<number> = []
  if (options.resume) {
    // Numbering goes on after the last line on disk; older lines are read from the files.
    const ranges = files().map(seqRange)
    const current = ranges.at(-1)
    const last = Math.max(0, ...ranges.map((range) => range?.last ?? 0))
    seq = last
    writtenSeq = last
    first = last + 1
    currentStart = current?.first ?? last + 1
    rotatedStarts = ranges.slice(0, -1).reverse().flatMap((range) => range === undefined ? [] : [range.first])
    fileBytes = Fs.statSync(options.path, { throwIfNoEntry: false })?.size ?? 0
  }
  /** Only the files that may hold lines in `(after, upTo]`: a follower reads one or two, not all. */
  const filesFor = (after: number, upTo: number) => {
    const starts = [...rotatedStarts].reverse().concat(currentStart)
    const paths = files().slice(options.keepFiles - (starts.length - 1))
    return paths.filter((_, i) => {
      const last = i + 1 < starts.length ? starts[i + 1]! - 1 : Number.POSITIVE_INFINITY
      return last > after && starts[i]! <= upTo
    })
  }
  const readFiles = (after: number, upTo: number) =>
    Effect.tryPromise({
      try: async () => {
        const lines: Array<LogLine> = []
        for (const path of filesFor(after, upTo)) {
          const text = await Fs.promises.readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
            if (error.code === "ENOENT") return ""
            throw error
          })
          parseFile(text, lines, after, upTo)
        }
        return lines
      },
      catch: (error) => new LogsError({ id: options.id, message: `cannot read the log: ${(error as Error).message}` })
    })
  /** Waits until every line up to `upTo` is on disk (or will never be: the disk failed). */
  const settled = (upTo: number) =>
    Effect.callback<void>((resume) => {
      const check = () => {
        if (writtenSeq < upTo && !diskFailed) return false
        diskWaiters.delete(check)
        resume(Effect.void)
        return true
      }
      if (check()) return
      diskWaiters.add(check)
      return Effect.sync(() => diskWaiters.delete(check))
    })
  /**
   * Lines with `after < seq <= upTo`: the older ones from the files (once the writer has put
   * them there), the newer ones from the ring. Lines the ring gave up while the read went on
   * are on disk by then: the read is repeated.
   */
  const fromDisk = (after: number, upTo: number): Effect.Effect<Array<LogLine>, LogsError> =>
    Effect.gen(function*() {
      while (true) {
        yield* settled(Math.min(upTo, first - 1))
        const onDisk = Math.min(upTo, writtenSeq)
        const lines = yield* readFiles(after, onDisk)
        const from = Math.max(after, onDisk)
        if (from + 1 >= first || from >= upTo || diskFailed) {
          lines.push(...fromRing(from, upTo))
          return lines
        }
      }
    })
  /** Lines with `after < seq <= upTo`, from the ring when it still holds them. */
  const range = (after: number, upTo: number): Effect.Effect<Array<LogLine>, LogsError> =>
    after + 1 >= first ? Effect.succeed(fromRing(after, upTo)) : fromDisk(after, upTo)

  const open = () => {
    const stream = Fs.createWriteStream(options.path, { fd: Fs.openSync(options.path, "a", 0o600), highWaterMark: maxBacklogBytes })
    // A failing disk loses log lines on disk (the ring keeps the newest), never the runner.
    stream.on("error", () => {
      diskFailed = true
      for (const check of [...diskWaiters]) check()
    })
    for (const event of ["drain", "finish", "close"]) stream.on(event, release)
    return stream
  }

  /** Starts a new current file. Writes still queued on the old one land in it after its rename. */
  const rotate = (from: number) => {
    out?.end()
    rotatedStarts = [currentStart, ...rotatedStarts].slice(0, options.keepFiles)
    currentStart = from
    const oldest = options.keepFiles === 0 ? options.path : `${options.path}.${options.keepFiles}`
    if (Fs.existsSync(oldest)) (options.discard ?? ((path) => Fs.rmSync(path, { force: true })))(oldest)
    for (let n = options.keepFiles; n >= 1; n--) {
      const from = n === 1 ? options.path : `${options.path}.${n - 1}`
      try {
        Fs.renameSync(from, `${options.path}.${n}`)
      } catch {
        // not there yet
      }
    }
    out = open()
    fileBytes = 0
  }

  /** Queues text for the current file; past the backlog limit, asks for pressure until it drained. */
  const write = (text: string | Buffer, upTo: number) => {
    out ??= open()
    const room = out.write(text, (error) => {
      if (error) diskFailed = true
      else writtenSeq = Math.max(writtenSeq, upTo)
      for (const check of [...diskWaiters]) check()
    })
    if (!room && !pressed) {
      pressed = true
      options.pressure?.(true)
    }
  }


  const history = (query: LogsQuery, upTo: number) =>
    Effect.gen(function*() {
      const keep = matcher(query)
      const inRing = fromRing(0, upTo).filter(keep)
      const oldest = ring[first % capacity]
      const complete = first === 1 ||
        (query.since !== undefined && oldest !== undefined && oldest.time < query.since) ||
        (query.tail !== undefined && inRing.length >= query.tail)
      const lines = complete ? inRing : (yield* fromDisk(0, upTo)).filter(keep)
      return query.tail === undefined ? lines : lines.slice(Math.max(0, lines.length - query.tail))
    })

  const follow = (query: LogsQuery, from: number): Stream.Stream<LogLine, LogsError> =>
    Stream.fromPull(
      Effect.sync(() => {
        const keep = matcher(query)
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
      const { bytes, bounds } = "bounds" in lines ? lines : spansOf(lines)
      const count = bounds.length / 2
      if (count === 0 || closed) return
      // One buffer per batch, each line's bytes copied in as they came (nothing decoded, nothing
      // encoded): written to disk at once, and what the ring's lines point into.
      const middle = ` ${time} ${streamCode(stream)} `
      const seqs: Array<string> = new Array(count)
      let size = 0
      for (let i = 0; i < count; i++) {
        seqs[i] = String(seq + 1 + i)
        size += seqs[i]!.length + middle.length + bounds[2 * i + 1]! - bounds[2 * i]! + 1
      }
      const batch = Buffer.allocUnsafe(size)
      /** Where each line's entry ends in the batch (after its newline). */
      const ends: Array<number> = new Array(count)
      let at = 0
      for (let i = 0; i < count; i++) {
        const head = seqs[i]!
        for (let k = 0; k < head.length; k++) batch[at++] = head.charCodeAt(k)
        for (let k = 0; k < middle.length; k++) batch[at++] = middle.charCodeAt(k)
        const from = bounds[2 * i]!
        const to = bounds[2 * i + 1]!
        const start = at
        batch.set(bytes.subarray(from, to), at)
        at += to - from
        batch[at++] = 10
        seq++
        keep({ seq, time, stream, batch, start, end: at - 1 })
        ends[i] = at
      }
      if (fileBytes + size <= options.fileBytes) {
        write(batch, seq)
        fileBytes += size
      } else {
        // A batch that would overflow the file is cut at a line boundary.
        let from = 0
        let entrySeq = seq - count
        for (let i = 0; i < count; i++) {
          entrySeq++
          const lineStart = i === 0 ? 0 : ends[i - 1]!
          if (fileBytes + ends[i]! - from > options.fileBytes && fileBytes + lineStart - from > 0) {
            if (lineStart > from) write(batch.subarray(from, lineStart), entrySeq - 1)
            rotate(entrySeq)
            from = lineStart
          }
        }
        write(batch.subarray(from), seq)
        fileBytes += size - from
      }
      wakeAll()
    },
    end() {
      ended = true
      closed = true
      out?.end()
      out = undefined
      release()
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
      out?.destroy()
      if (out !== undefined || seq > 0) for (const path of files()) Fs.rmSync(path, { force: true })
      out = undefined
      release()
      wakeAll()
    }
  }
}
