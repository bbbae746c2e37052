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
 * (a runner stops or dies), undelivered chunks are lost and subscriptions end.
 *
 * @since 0.4.0
 */
import { ClusterSchema, Entity } from "effect/cluster"
import { Effect, Queue, Schema, Semaphore, Stream } from "effect"
import { Rpc } from "effect/rpc"

/**
 * A topic name.
 *
 * @since 0.4.0
 */
export const TopicName = Schema.String.check(Schema.isPattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/))

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
    chunks: Schema.Array(Schema.Uint8Array)
  }
})

/**
 * Subscribes: every chunk published from now on (and, for the first consumer, what waited).
 *
 * @since 0.4.0
 */
export const Subscribe = Rpc.make("Subscribe", {
  success: Schema.Uint8Array,
  stream: true
})

/**
 * The topic's content type and state.
 *
 * @since 0.4.0
 */
export const Describe = Rpc.make("Describe", {
  success: Schema.Struct({
    contentType: Schema.optionalKey(Schema.String),
    consumers: Schema.Int,
    waitingChunks: Schema.Int
  })
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
  /** Chunks a consumer (or the waiting buffer) holds before producers wait. Default 1024. */
  readonly capacity?: number
}

/**
 * The behaviour, to be provided with a runner's cluster layer.
 *
 * @since 0.4.0
 */
export const layer = (options: Options = {}) =>
  Topic.toLayer(
    Effect.gen(function*() {
      const capacity = options.capacity ?? 1024
      let contentType: string | undefined
      let waiting = yield* Queue.bounded<Uint8Array>(capacity)
      const consumers = new Set<Queue.Queue<Uint8Array>>()
      const lastSeq = new Map<string, number>()
      // One publish at a time, so chunks keep their order for every consumer.
      const publishing = yield* Semaphore.make(1)

      return Topic.of({
        Publish: ({ payload }) =>
          publishing.withPermits(1)(Effect.gen(function*() {
            if ((lastSeq.get(payload.producer) ?? -1) >= payload.seq) return
            lastSeq.set(payload.producer, payload.seq)
            if (contentType === undefined && payload.contentType !== undefined) contentType = payload.contentType
            for (const chunk of payload.chunks) {
              if (consumers.size === 0) yield* Queue.offer(waiting, chunk)
              else yield* Effect.forEach([...consumers], (queue) => Queue.offer(queue, chunk), { discard: true })
            }
          })),
        Subscribe: () =>
          Stream.unwrap(Effect.gen(function*() {
            // The first consumer takes what waited, in order.
            let queue: Queue.Queue<Uint8Array>
            if (consumers.size === 0) {
              queue = waiting
              waiting = yield* Queue.bounded<Uint8Array>(capacity)
            } else {
              queue = yield* Queue.bounded<Uint8Array>(capacity)
            }
            consumers.add(queue)
            return Stream.fromQueue(queue).pipe(
              Stream.ensuring(Effect.sync(() => consumers.delete(queue)))
            )
          })),
        Describe: () =>
          Effect.gen(function*() {
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
