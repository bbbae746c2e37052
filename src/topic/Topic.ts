/**
 * Topics: named byte streams in the cluster that connect producers (instances' output, clients)
 * to consumers (instances' input, clients), wherever they run. A topic is a sharded entity, so
 * every participant reaches the same one.
 *
 * Delivery: each chunk is delivered once to every consumer subscribed when it was published;
 * chunks published while nobody is subscribed wait (bounded; producers then wait too) for the
 * first consumer. A publish carries its producer's sequence number, so a publish repeated after
 * a lost answer is not delivered twice (STH duplicates items: its issue #913).
 *
 * Limits: a topic's buffers live in the memory of the runner that holds it; when its shard moves
 * (a runner stops or dies), undelivered chunks are lost and subscriptions end. Memory is
 * bounded: chunks are cut to at most 64 KiB, each consumer (and the waiting buffer) holds at
 * most `capacity` chunks, all topics of a runner hold at most `maxBufferedBytes` (producers wait
 * beyond either), and a runner holds at most `maxTopics` topics. Names are checked
 * ({@link TopicName}) on every participant.
 *
 * @since 0.4.0
 */
import { ClusterSchema, Entity } from "effect/cluster"
import { type Cause, Effect, Queue, Schema, Semaphore, Stream } from "effect"
import { CurrentAddress } from "effect/cluster/Entity"
import * as KeepAlive from "../liveness/KeepAlive.ts"
import { reasonStatus } from "../base/HttpStatus.ts"
import { Rpc } from "effect/rpc"

/**
 * A topic name.
 *
 * @since 0.4.0
 */
export const TopicName = Schema.String.check(Schema.isPattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/))

/** @since 0.5.0 */
export const isTopicName = Schema.is(TopicName)

/**
 * A topic refused an operation: its name is not a topic name, or its runner holds as many
 * topics as it may.
 *
 * @since 0.5.0
 */
export class TopicError extends Schema.TaggedError<TopicError>()("TopicError", {
  topic: Schema.String,
  reason: Schema.Literals(["InvalidName", "TooManyTopics", "Exists", "NotFound", "InUse", "StoreUnavailable"]),
  message: Schema.String
}) {
  /** The HTTP status the gateway answers it with, by its reason. */
  get httpStatus(): number {
    return reasonStatus(this.reason)
  }
}

/** @since 0.5.0 */
export const invalidName = (topic: string) =>
  new TopicError({
    topic: topic.length > 64 ? `${topic.slice(0, 64)}…` : topic,
    reason: "InvalidName",
    message: "a topic name is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
  })

/**
 * Publishes chunks. `seq` counts the producer's publishes from 0; a seq already seen is ignored.
 *
 * @since 0.4.0
 */
export const Publish = Rpc.make("Publish", {
  payload: {
    producer: Schema.String,
    seq: Schema.Int,
    contentType: Schema.optionalKey(Schema.String),
    chunks: Schema.Array(Schema.Uint8Array),
    /** After these chunks, the topic's stream ends (STH's `x-end-stream: true`). */
    end: Schema.optionalKey(Schema.Boolean)
  },
  error: TopicError
})

/**
 * Subscribes: every chunk published from now on (and, for the first consumer, what waited).
 *
 * @since 0.4.0
 */
export const Subscribe = Rpc.make("Subscribe", {
  success: Schema.Uint8Array,
  error: TopicError,
  stream: true
})

/**
 * A topic's content type, its consumers, and the chunks waiting for a first consumer.
 *
 * @since 0.8.0
 */
export const TopicDescription = Schema.Struct({
  contentType: Schema.optionalKey(Schema.String),
  consumers: Schema.Int,
  waitingChunks: Schema.Int
})
/** @since 0.8.0 */
export type TopicDescription = typeof TopicDescription.Type

/**
 * The topic's content type and state.
 *
 * @since 0.4.0
 */
export const Describe = Rpc.make("Describe", {
  success: TopicDescription,
  error: TopicError
})

/**
 * The entity.
 *
 * @since 0.4.0
 */
export const Topic = Entity.make("Topic", [Publish, Subscribe, Describe]).annotate(ClusterSchema.ClientTracingEnabled, false)

/**
 * @since 0.4.0
 */
export interface Options {
  /** Chunks a consumer (or the waiting buffer) holds before producers wait. Default 256. */
  readonly capacity?: number
  /** Bytes all topics of a runner hold before producers wait. Default 256 MiB. */
  readonly maxBufferedBytes?: number
  /** Topics a runner holds at once. Default 1000. */
  readonly maxTopics?: number
}

/** The largest chunk a topic buffers: bigger ones are cut. */
const maxChunkBytes = 64 * 1024

const slices = (chunks: ReadonlyArray<Uint8Array>): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  for (const chunk of chunks) {
    for (let at = 0; at < chunk.length; at += maxChunkBytes) out.push(chunk.subarray(at, at + maxChunkBytes))
  }
  return out
}

/**
 * The behaviour, to be provided with a runner's cluster layer.
 *
 * @since 0.4.0
 */
export const layer = (options: Options = {}) => {
  const capacity = options.capacity ?? 256
  const maxTopics = options.maxTopics ?? 1000
  // Shared by every topic of this runner.
  const budget = Semaphore.makeUnsafe(Math.max(maxChunkBytes, options.maxBufferedBytes ?? 256 * 1024 * 1024))
  let topics = 0
  return Topic.toLayer(
    Effect.gen(function*() {
      const name = (yield* CurrentAddress).entityId
      const refused = !isTopicName(name)
        ? invalidName(name)
        : topics >= maxTopics
        ? new TopicError({ topic: name, reason: "TooManyTopics", message: `this runner holds ${topics} topics, its limit` })
        : undefined
      if (refused === undefined) {
        topics++
        yield* Effect.addFinalizer(() => Effect.sync(() => topics--))
      }
      let contentType: string | undefined
      const newQueue = () => Queue.bounded<Uint8Array, Cause.Done>(capacity)
      let waiting = yield* newQueue()
      // The waiting chunks end the stream of whoever takes them (an end came while nobody read).
      let waitingEnds = false
      const consumers = new Set<Queue.Queue<Uint8Array, Cause.Done>>()
      const lastSeq = new Map<string, number>()
      // One publish at a time, so chunks keep their order for every consumer.
      const publishing = yield* Semaphore.make(1)
      // While chunks wait for a first consumer, the topic must not passivate (they would be
      // lost): it holds Effect's keep-alive until a consumer takes them.
      const keepAlive = yield* KeepAlive.make
      let held = false
      const holdWhileWaiting = (hold: boolean) =>
        Effect.suspend(() => {
          if (held === hold) return Effect.void
          held = hold
          return keepAlive(hold)
        })

      /** Takes the chunk's bytes from the runner's budget, then queues it (gives them back if it could not). */
      const offer = (queue: Queue.Queue<Uint8Array, Cause.Done>, chunk: Uint8Array) =>
        Effect.flatMap(budget.take(chunk.length), () =>
          Effect.flatMap(Queue.offer(queue, chunk), (queued) => queued ? Effect.void : budget.release(chunk.length)))
      /** Empties a queue no one will read, giving its bytes back. */
      const discard = (queue: Queue.Queue<Uint8Array, Cause.Done>) =>
        Effect.gen(function*() {
          const left = yield* Queue.clear(queue).pipe(Effect.orElseSucceed(() => [] as Array<Uint8Array>))
          yield* Queue.shutdown(queue)
          yield* budget.release(left.reduce((sum, chunk) => sum + chunk.length, 0))
        })
      yield* Effect.addFinalizer(() => Effect.forEach([waiting, ...consumers], discard, { discard: true }))

      return Topic.of({
        Publish: ({ payload }) =>
          refused !== undefined ? Effect.fail(refused) : publishing.withPermits(1)(Effect.gen(function*() {
            if ((lastSeq.get(payload.producer) ?? -1) >= payload.seq) return
            lastSeq.set(payload.producer, payload.seq)
            if (contentType === undefined && payload.contentType !== undefined) contentType = payload.contentType
            for (const chunk of slices(payload.chunks)) {
              if (consumers.size === 0) yield* Effect.andThen(holdWhileWaiting(true), offer(waiting, chunk))
              else yield* Effect.forEach([...consumers], (queue) => offer(queue, chunk), { discard: true })
            }
            if (payload.end !== true) return
            // The end: every consumer's stream ends after what it holds; with none, the first to
            // come gets what waits and then the end. What is published next starts anew.
            if (consumers.size === 0) {
              yield* Queue.end(waiting)
              waitingEnds = true
              yield* holdWhileWaiting(true)
            } else {
              yield* Effect.forEach([...consumers], Queue.end, { discard: true })
              consumers.clear()
            }
          })),
        Subscribe: () =>
          refused !== undefined ? Stream.fail(refused) : Stream.unwrap(Effect.gen(function*() {
            // The first consumer takes what waited, in order.
            let queue: Queue.Queue<Uint8Array, Cause.Done>
            const ended = waitingEnds
            if (consumers.size === 0) {
              queue = waiting
              waiting = yield* newQueue()
              waitingEnds = false
              yield* holdWhileWaiting(false)
            } else {
              queue = yield* newQueue()
            }
            // A stream that already ended takes no new chunks.
            if (!ended) consumers.add(queue)
            return Stream.fromQueue(queue).pipe(
              Stream.tap((chunk) => budget.release(chunk.length)),
              // A consumer that leaves takes its queue along: a producer waiting on it goes on.
              Stream.ensuring(Effect.suspend(() => {
                consumers.delete(queue)
                return discard(queue)
              }))
            )
          })),
        Describe: () =>
          refused !== undefined ? Effect.fail(refused) : Effect.gen(function*() {
            return {
              ...(contentType === undefined ? {} : { contentType }),
              consumers: consumers.size,
              waitingChunks: yield* Queue.size(waiting)
            }
          })
      })
    }),
    { concurrency: "unbounded" }
  )
}
