/**
 * A Node readable (a data connection) as an Effect stream of its chunks, as Node read them.
 *
 * Why not `NodeStream.fromReadable`: it reads in paused mode, and `read()` there hands back the
 * whole internal buffer, concatenated into a new buffer whenever more than one chunk waits. At
 * hundreds of MiB/s that copy and its garbage were most of a client's CPU. Here the readable
 * flows: every chunk is kept as it came, a pull takes all that arrived since the last one, and
 * the readable is paused while more than `highWaterBytes` wait unread.
 *
 * @since 0.11.0
 */
import { Cause, Channel, Effect, Exit, Scope, Stream } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import { finished, type Readable } from "node:stream"

/**
 * @since 0.11.0
 */
export interface Options<E> {
  readonly evaluate: () => Readable
  readonly onError: (error: unknown) => E
  /** Whether the readable is destroyed when the stream ends (default true). */
  readonly closeOnDone?: boolean | undefined
  /** How many unread bytes pause the readable (default 1 MiB). */
  readonly highWaterBytes?: number | undefined
}

/**
 * The chunks of a readable; fails with `onError` of what broke it (a close before its end too).
 *
 * @since 0.11.0
 */
export const fromReadable = <E>(options: Options<E>): Stream.Stream<Uint8Array, E> =>
  Stream.fromChannel(Channel.fromTransform((_, scope) =>
    Effect.suspend(() => {
      const readable = options.evaluate()
      const highWater = options.highWaterBytes ?? 1024 * 1024
      let items: Array<Uint8Array> = []
      let bytes = 0
      let paused = false
      let exit: Exit.Exit<never, E | Cause.Done> | undefined
      let wake: (() => void) | undefined
      const notify = () => {
        const resume = wake
        wake = undefined
        resume?.()
      }
      const onData = (chunk: Buffer) => {
        items.push(chunk)
        bytes += chunk.length
        if (bytes >= highWater && !paused) {
          paused = true
          readable.pause()
        }
        notify()
      }
      const cleanup = finished(readable, { writable: false }, (error) => {
        exit ??= error === undefined || error === null ? Exit.fail(Cause.Done()) : Exit.fail(options.onError(error))
        notify()
      })
      readable.on("data", onData)
      readable.resume()

      const pull: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, E | Cause.Done> = Effect.suspend(() => {
        if (items.length > 0) {
          const taken = items as unknown as NonEmptyReadonlyArray<Uint8Array>
          items = []
          bytes = 0
          if (paused) {
            paused = false
            readable.resume()
          }
          return Effect.succeed(taken)
        }
        if (exit !== undefined) return exit
        return Effect.callback<NonEmptyReadonlyArray<Uint8Array>, E | Cause.Done>((resume) => {
          wake = () => resume(pull)
          return Effect.sync(() => {
            wake = undefined
          })
        })
      })

      return Effect.as(
        Scope.addFinalizer(
          scope,
          Effect.sync(() => {
            readable.off("data", onData)
            cleanup()
            if (options.closeOnDone ?? true) readable.destroy()
            else readable.pause()
          })
        ),
        pull
      )
    })
  ))
