/**
 * Durable topics: a topic created `durable` keeps its chunks in the cluster store instead of
 * one runner's memory, so no runner's death loses them, and its consumers go on where they
 * stopped wherever they run next.
 *
 * - **The log** (`shardhub_topic_log`): every chunk (at most 64 KiB) gets the next number of its
 *   topic, in one transaction per batch, so the chunks of one producer keep their order. A
 *   batch is keyed by its producer and the number of its first chunk: a batch repeated after a
 *   lost answer is stored once.
 * - **Consumers** are the instances wired to the topic as input (`spec.topics.input`), each
 *   with a cursor (`shardhub_topic_cursors`): the number of the next chunk it gets. A new one
 *   starts at the oldest chunk kept. Its runner reads from the cursor and writes the chunks into
 *   the process's input; the cursor follows what the process surely read: what its input took,
 *   less {@link maxInFlightBytes} (a pipe's contents cannot be seen from outside). So delivery
 *   is at least once: nothing is lost when a consumer's process ends (here, or with its runner),
 *   and the next process (here or on another runner) may get the last 2 MiB or so its
 *   predecessor was handed again. A program that acknowledges what it consumed (`{"$shardhub":
 *   "ack","bytes":N}` on its message channel, N counted from its first input byte) moves the
 *   cursor exactly: the next process then gets only what it had not acknowledged.
 * - **Retention**: a chunk is deleted once every consumer has it; a consumer whose instance
 *   ended or was removed no longer holds chunks back (`Pruning`, every 30 s). A producer waits while the
 *   topic holds `maxBacklogChunks` (16 384 × 64 KiB = 1 GiB) chunks no consumer has yet; a topic
 *   with no consumer keeps what it got, up to that bound.
 *
 * Clients publish to and read from a durable topic the same way (`HostClient.publish` /
 * `subscribe`); a client's subscription reads from the topic's current end and keeps no cursor.
 *
 * @since 0.10.0
 */
import { Context, Effect, Layer, Schedule, Stream } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { TopicError } from "./Topic.ts"

/** The largest chunk kept: bigger ones are cut. */
const maxChunkBytes = 64 * 1024
/** Chunks read per query. */
const readBatch = 64
/** Chunks no consumer has yet that a topic keeps before its producers wait. */
export const maxBacklogChunks = 16_384
/**
 * Bytes handed to a consumer's process input that it may not have read yet: what the runner
 * queues on its stdin (up to 1 MiB and a chunk, `Stdio`) and the pipe itself (64 KiB, or up to
 * Linux's `pipe-max-size`, 1 MiB, if the program enlarged it). The cursor stays that far behind
 * what was handed over.
 */
export const maxInFlightBytes = 2 * 1024 * 1024 + 2 * maxChunkBytes
/** How often a reader at the end of the log looks for more. */
const pollMs = 25

const unavailable = (topic: string) => (error: SqlError) =>
  new TopicError({ topic, reason: "StoreUnavailable", message: `cluster store: ${error.message}` })

const cut = (chunks: ReadonlyArray<Uint8Array>): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  for (const chunk of chunks) {
    for (let at = 0; at < chunk.length; at += maxChunkBytes) out.push(chunk.subarray(at, at + maxChunkBytes))
  }
  return out
}

/**
 * The durable topics on the store's `SqlClient`.
 *
 * @since 0.10.0
 */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient

  /** Whether `topic` is durable (a store failure says so: its caller cannot tell). */
  const isDurable = (topic: string) =>
    sql<{ durable: boolean }>`SELECT durable FROM shardhub_topics WHERE name = ${topic}`.pipe(
      Effect.map((rows) => rows[0]?.durable === true),
      Effect.mapError(unavailable(topic))
    )

  /** Chunks of `topic` that some consumer (or, with none, anyone) has not got yet. */
  const backlog = (topic: string) =>
    sql<{ n: string | number }>`
      SELECT t.next_n - COALESCE((SELECT min(c.n) FROM shardhub_topic_cursors c WHERE c.topic = t.name),
        (SELECT min(l.n) FROM shardhub_topic_log l WHERE l.topic = t.name), t.next_n) AS n
      FROM shardhub_topics t WHERE t.name = ${topic}`.pipe(Effect.map((rows) => Number(rows[0]?.n ?? 0)))

  /**
   * Appends `chunks` (cut to 64 KiB) as one batch of `producer`, whose batch number `batch`
   * makes a repeat a no-op; waits while the topic's backlog is full.
   */
  const append = (topic: string, producer: string, batch: number, chunks: ReadonlyArray<Uint8Array>) =>
    Effect.gen(function*() {
      const pieces = cut(chunks)
      if (pieces.length === 0) return
      yield* backlog(topic).pipe(
        Effect.repeat({ until: (n) => n < maxBacklogChunks, schedule: Schedule.spaced("50 millis") })
      )
      yield* sql.withTransaction(Effect.gen(function*() {
        const seen = yield* sql`SELECT 1 FROM shardhub_topic_log WHERE topic = ${topic} AND producer = ${producer} AND batch = ${batch} LIMIT 1`
        if (seen.length > 0) return
        const numbered = yield* sql<{ first: string | number }>`
          UPDATE shardhub_topics SET next_n = next_n + ${pieces.length} WHERE name = ${topic} RETURNING next_n - ${pieces.length} AS first`
        if (numbered.length === 0) return yield* new TopicError({ topic, reason: "NotFound", message: `no topic ${topic} (it was deleted)` })
        const base = Number(numbered[0]!.first)
        const rows = pieces.map((data, i) => ({ topic, n: base + i, producer, batch, data }))
        yield* sql`INSERT INTO shardhub_topic_log ${sql.insert(rows as [typeof rows[number], ...Array<typeof rows[number]>])}`
      }))
    }).pipe(Effect.catchTag("SqlError", (error) => Effect.fail(unavailable(topic)(error))))

  const readFrom = (topic: string, from: number) =>
    sql<{ n: string | number; data: Uint8Array }>`
      SELECT n, data FROM shardhub_topic_log WHERE topic = ${topic} AND n >= ${from} ORDER BY n LIMIT ${readBatch}`.pipe(
      Effect.mapError(unavailable(topic))
    )

  /**
   * The chunks from number `from` on, forever. A batch is asked for only once the one before
   * was taken by whoever reads the stream; then `read(next)` runs with the number of the first
   * chunk the reader surely consumed all of: what it took minus `inFlight` bytes (what a pipe and
   * the buffers on its way may still hold).
   */
  const chunksFrom = (
    topic: string,
    from: number,
    inFlight: number,
    read: (next: number) => Effect.Effect<void, TopicError>,
    acked: () => number | undefined = () => undefined
  ) =>
    Stream.unwrap(Effect.sync(() => {
      let next = from
      let committed = from
      // Chunks taken but not yet surely consumed: their numbers and the bytes up to their end.
      const open: Array<{ readonly n: number; readonly through: number }> = []
      let taken = 0
      /** Moves the cursor past what was surely consumed: what the reader acknowledged, else what it took less `inFlight`. */
      const advance = Effect.suspend(() => {
        const consumed = acked() ?? taken - inFlight
        let sure = committed
        while (open.length > 0 && open[0]!.through <= consumed) sure = open.shift()!.n + 1
        if (sure <= committed) return Effect.void
        committed = sure
        return read(sure)
      })
      const pull: Effect.Effect<ReadonlyArray<Uint8Array>, TopicError> = Effect.gen(function*() {
        while (true) {
          yield* advance
          const rows = yield* readFrom(topic, next)
          if (rows.length > 0) {
            next = Number(rows.at(-1)!.n) + 1
            for (const row of rows) {
              taken += row.data.length
              open.push({ n: Number(row.n), through: taken })
            }
            return rows.map((row) => row.data)
          }
          yield* Effect.sleep(pollMs)
        }
      })
      return Stream.fromEffectRepeat(pull).pipe(Stream.flatMap((chunks) => Stream.fromIterable(chunks)))
    }))

  /** Where `consumer` stands in `topic` (a new one starts at the oldest chunk kept). */
  const cursor = (topic: string, consumer: string) =>
    sql<{ n: string | number }>`
      INSERT INTO shardhub_topic_cursors (topic, consumer, n)
      SELECT ${topic}, ${consumer}, COALESCE((SELECT min(n) FROM shardhub_topic_log WHERE topic = ${topic}), next_n)
      FROM shardhub_topics WHERE name = ${topic}
      ON CONFLICT (topic, consumer) DO UPDATE SET n = shardhub_topic_cursors.n
      RETURNING n`.pipe(Effect.map((rows) => Number(rows[0]?.n ?? 0)), Effect.mapError(unavailable(topic)))

  /** Moves `consumer`'s cursor to `next` and deletes what every consumer has. */
  const commit = (topic: string, consumer: string, next: number) =>
    sql.withTransaction(Effect.gen(function*() {
      yield* sql`UPDATE shardhub_topic_cursors SET n = GREATEST(n, ${next}) WHERE topic = ${topic} AND consumer = ${consumer}`
      yield* sql`DELETE FROM shardhub_topic_log WHERE topic = ${topic}
        AND n < (SELECT min(n) FROM shardhub_topic_cursors WHERE topic = ${topic})`
    })).pipe(Effect.mapError(unavailable(topic)))

  return {
    isDurable,
    append,
    /**
     * What `consumer` gets: the chunks from its cursor on, the cursor moved as they are surely
     * consumed: as far as `acked` says (the bytes of this stream its reader acknowledged), or,
     * while it says nothing, what was taken less {@link maxInFlightBytes}.
     */
    consume: (topic: string, consumer: string, acked?: () => number | undefined) =>
      Stream.unwrap(Effect.map(cursor(topic, consumer), (from) =>
        chunksFrom(topic, from, maxInFlightBytes, (next) => commit(topic, consumer, next), acked))),
    /** What a client reading along gets: the chunks from the topic's current end on. */
    follow: (topic: string) =>
      Stream.unwrap(
        sql<{ next_n: string | number }>`SELECT next_n FROM shardhub_topics WHERE name = ${topic}`.pipe(
          Effect.mapError(unavailable(topic)),
          Effect.map((rows) => chunksFrom(topic, Number(rows[0]?.next_n ?? 0), 0, () => Effect.void))
        )
      )
  }
})

/** @since 0.10.0 */
export type Durable = Effect.Success<typeof make>

/**
 * The durable topics of a participant, made once (not per entity that wires a topic).
 *
 * @since 0.10.0
 */
export class DurableTopics extends Context.Service<DurableTopics, Durable>()("shardhub/DurableTopics") {}

/** @since 0.10.0 */
export const layer: Layer.Layer<DurableTopics, never, SqlClient> = Layer.effect(DurableTopics, make)
