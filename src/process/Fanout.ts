/**
 * One producer, many subscribers: how a child's output and messages reach every reader.
 *
 * The producer is a Node stream callback, so publishing is synchronous and never waits on a
 * reader. Two policies:
 * - {@link lossy} (messages): each subscriber holds at most `capacity` items; when a slow one
 *   overflows, the newest items are dropped and the subscriber receives an explicit `lost(n)`
 *   item at the gap — never a silent hole.
 * - {@link lossless} (raw bytes): nothing is dropped; when a subscriber falls `highWaterBytes`
 *   behind, the producer is paused (the child then blocks on its full pipe) until it catches up.
 *
 * @since 0.2.0
 */
import { Cause, Channel, Effect, Scope, Stream } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import type { Writable } from "node:stream"

interface Subscriber<A> {
  items: Array<A>
  bytes: number
  lost: number
  wake: (() => void) | undefined
}

const drain = <A>(subscriber: Subscriber<A>): NonEmptyReadonlyArray<A> => {
  const items = subscriber.items as unknown as NonEmptyReadonlyArray<A>
  subscriber.items = []
  subscriber.bytes = 0
  return items
}

const notify = <A>(subscriber: Subscriber<A>) => {
  const wake = subscriber.wake
  subscriber.wake = undefined
  wake?.()
}

const pullOf = <A>(
  subscriber: Subscriber<A>,
  isEnded: () => boolean,
  afterTake: (subscriber: Subscriber<A>) => void
): Effect.Effect<NonEmptyReadonlyArray<A>, Cause.Done> => {
  const pull: Effect.Effect<NonEmptyReadonlyArray<A>, Cause.Done> = Effect.suspend(() => {
    if (subscriber.items.length > 0) {
      const items = drain(subscriber)
      afterTake(subscriber)
      return Effect.succeed(items)
    }
    if (isEnded()) return Cause.done()
    return Effect.callback<NonEmptyReadonlyArray<A>, Cause.Done>((resume) => {
      subscriber.wake = () => resume(pull)
      return Effect.sync(() => {
        subscriber.wake = undefined
      })
    })
  })
  return pull
}

const subscriberStream = <A>(
  subscribe: () => Subscriber<A> | undefined,
  unsubscribe: (subscriber: Subscriber<A>) => void,
  isEnded: () => boolean,
  afterTake: (subscriber: Subscriber<A>) => void
): Stream.Stream<A> =>
  Stream.fromChannel(Channel.fromTransform((_, scope) =>
    Effect.gen(function*() {
      const subscriber = subscribe()
      if (subscriber === undefined) return Cause.done()
      yield* Scope.addFinalizer(scope, Effect.sync(() => unsubscribe(subscriber)))
      return pullOf(subscriber, isEnded, afterTake)
    })
  ))

/**
 * A lossy broadcast: a publisher that never waits and subscribers that learn what they missed.
 *
 * @since 0.2.0
 */
export interface Lossy<A> {
  readonly publish: (item: A) => void
  /** Ends every subscription after it has drained; later subscriptions are empty. */
  readonly end: () => void
  /**
   * Subscribes now, for the life of the scope; the stream yields the items published since (and
   * `lost(n)` markers where this subscriber overflowed).
   */
  readonly subscribe: Effect.Effect<Stream.Stream<A>, never, Scope.Scope>
  readonly subscribers: () => number
}

/**
 * @since 0.2.0
 */
export const lossy = <A>(options: { readonly capacity: number; readonly lost: (count: number) => A }): Lossy<A> => {
  const subscribers = new Set<Subscriber<A>>()
  let ended = false
  return {
    publish(item) {
      for (const subscriber of subscribers) {
        if (subscriber.lost > 0) {
          if (subscriber.items.length >= options.capacity) {
            subscriber.lost++
            continue
          }
          subscriber.items.push(options.lost(subscriber.lost))
          subscriber.lost = 0
        }
        if (subscriber.items.length >= options.capacity) subscriber.lost++
        else subscriber.items.push(item)
        notify(subscriber)
      }
    },
    end() {
      ended = true
      for (const subscriber of subscribers) notify(subscriber)
    },
    subscribe: Effect.map(
      Effect.acquireRelease(
        Effect.sync((): Subscriber<A> => {
          const subscriber: Subscriber<A> = { items: [], bytes: 0, lost: 0, wake: undefined }
          if (!ended) subscribers.add(subscriber)
          return subscriber
        }),
        (subscriber) => Effect.sync(() => subscribers.delete(subscriber))
      ),
      (subscriber) =>
        Stream.fromPull(Effect.succeed(pullOf(subscriber, () => ended, (subscriber) => {
          if (subscriber.lost > 0) {
            subscriber.items.push(options.lost(subscriber.lost))
            subscriber.lost = 0
          }
        })))
    ),
    subscribers: () => subscribers.size
  }
}

/**
 * A lossless byte broadcast with backpressure and a bounded replay of the most recent bytes.
 *
 * @since 0.2.0
 */
export interface Lossless {
  readonly publish: (chunk: Buffer) => void
  readonly end: () => void
  /**
   * Bytes from now on; with `replay`, first the retained recent bytes (everything since the
   * start while less than `retainBytes` was produced).
   */
  readonly subscribe: (replay: boolean) => Stream.Stream<Uint8Array>
  /**
   * The same bytes as {@link Lossless.subscribe}, written straight into `writable` as they are
   * published: no fiber per chunk, which is what a byte stream to a socket needs to keep up with
   * the pipe. The writable's queue is the reader's backlog (the producer pauses when it reaches
   * `highWaterBytes`). Succeeds when the broadcast ended and everything was handed to the
   * writable, or when the writable closed first (nobody reads any more); `written` is told of
   * every chunk handed over. The writable is not ended here.
   *
   * @since 0.7.0
   */
  readonly pipe: (replay: boolean, writable: Writable, written: (bytes: number) => void) => Effect.Effect<void>
  /** Whether anything was dropped from the replay buffer. */
  readonly truncated: () => boolean
}

/** What the broadcast sees of a reader: where a chunk goes, and whether it is behind. */
interface Reader {
  readonly push: (chunk: Buffer) => void
  readonly end: () => void
  readonly behind: () => boolean
}

/**
 * @since 0.2.0
 */
export const lossless = (options: {
  readonly retainBytes: number
  readonly highWaterBytes: number
  /** Called with `true` to pause the producer and `false` to resume it. */
  readonly pressure: (paused: boolean) => void
}): Lossless => {
  /** By what they read for: a stream's subscriber, or a writable. */
  const readers = new Map<object, Reader>()
  const retained: Array<Buffer> = []
  let retainedBytes = 0
  let dropped = false
  let ended = false
  let paused = false

  const update = () => {
    let behind = false
    for (const reader of readers.values()) {
      if (reader.behind()) behind = true
    }
    if (behind !== paused) {
      paused = behind
      options.pressure(paused)
    }
  }

  const streamReader = (subscriber: Subscriber<Buffer>): Reader => ({
    push: (chunk) => {
      subscriber.items.push(chunk)
      subscriber.bytes += chunk.length
      notify(subscriber)
    },
    end: () => notify(subscriber),
    behind: () => subscriber.bytes >= options.highWaterBytes
  })

  return {
    publish(chunk) {
      if (options.retainBytes > 0) {
        retained.push(chunk)
        retainedBytes += chunk.length
        while (retainedBytes > options.retainBytes && retained.length > 1) {
          retainedBytes -= retained.shift()!.length
          dropped = true
        }
      }
      for (const reader of readers.values()) reader.push(chunk)
      update()
    },
    end() {
      ended = true
      for (const reader of readers.values()) reader.end()
    },
    subscribe: (replay) =>
      subscriberStream<Buffer>(
        () => {
          const subscriber: Subscriber<Buffer> = {
            items: replay ? [...retained] : [],
            bytes: replay ? retainedBytes : 0,
            lost: 0,
            wake: undefined
          }
          if (ended && subscriber.items.length === 0) return undefined
          if (!ended) readers.set(subscriber, streamReader(subscriber))
          return subscriber
        },
        (subscriber) => {
          readers.delete(subscriber)
          update()
        },
        () => ended,
        update
      ),
    pipe: (replay, writable, written) =>
      Effect.callback<void>((resume) => {
        const write = (chunk: Buffer) => {
          written(chunk.length)
          writable.write(chunk)
        }
        const reader: Reader = {
          push: write,
          end: () => finish(),
          behind: () => writable.writableLength >= options.highWaterBytes
        }
        const onDrain = () => update()
        let done = false
        const finish = () => {
          if (done) return
          done = true
          readers.delete(writable)
          writable.off("drain", onDrain)
          writable.off("close", finish)
          update()
          resume(Effect.void)
        }
        if (replay) for (const chunk of retained) write(chunk)
        if (ended || writable.destroyed) {
          finish()
          return
        }
        readers.set(writable, reader)
        writable.on("drain", onDrain)
        writable.once("close", finish)
        update()
        return Effect.sync(finish)
      }),
    truncated: () => dropped
  }
}
