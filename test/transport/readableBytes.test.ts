/**
 * A data connection read as an Effect stream (`ReadableBytes.fromReadable`): every byte in
 * order, a reader that does not pull holds the sender back, a broken connection fails the
 * stream, and `closeOnDone: false` leaves the connection to its owner.
 */
import * as Crypto from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Data, Effect, Exit, Fiber, Latch, Stream } from "effect"
import * as ReadableBytes from "../../src/transport/ReadableBytes.ts"
import { concat, sha256, socketPair } from "../support/bytes.ts"
import { until } from "../support/processManager.ts"

class Broken extends Data.TaggedError("Broken")<{ readonly message: string }> {}
const onError = (error: unknown) => new Broken({ message: String((error as Error).message ?? error) })

/** Writes `data` in 64 KiB pieces, as fast as the connection takes them, then ends. */
const send = (socket: import("node:net").Socket, data: Buffer) => {
  let at = 0
  const more = () => {
    while (at < data.length) {
      const piece = data.subarray(at, at + 64 * 1024)
      at += piece.length
      if (!socket.write(piece)) return void socket.once("drain", more)
    }
    socket.end()
  }
  more()
}

describe("ReadableBytes", () => {
  it.live("every byte arrives once and in order", () =>
    Effect.gen(function*() {
      const [near, far] = yield* socketPair
      const data = Crypto.randomBytes(32 * 1024 * 1024)
      send(far, data)
      const chunks = yield* Stream.runCollect(ReadableBytes.fromReadable({ evaluate: () => near, onError }))
      expect(sha256(concat(chunks))).toBe(sha256(data))
      expect(near.destroyed).toBe(true)
    }))

  it.live("a reader that stops pulling pauses the connection, and then gets every byte", () =>
    Effect.gen(function*() {
      const [near, far] = yield* socketPair
      const data = Crypto.randomBytes(64 * 1024 * 1024)
      const highWaterBytes = 256 * 1024
      send(far, data)
      const taken: Array<Uint8Array> = []
      const gate = yield* Latch.make(false)
      const reader = yield* ReadableBytes.fromReadable({ evaluate: () => near, onError, highWaterBytes }).pipe(
        Stream.runForEach((chunk) => Effect.andThen(gate.await, Effect.sync(() => taken.push(chunk)))),
        Effect.forkScoped
      )
      // The reader holds its first chunk at the gate: the connection is paused once the
      // high-water mark waits unread, and the sender is left with what the kernel cannot take.
      yield* until(() => near.isPaused() && far.writableLength > 0, "the connection is paused and the sender held back")
      const readBefore = near.bytesRead
      yield* Effect.sleep("100 millis")
      expect(near.bytesRead).toBe(readBefore)
      expect(readBefore).toBeLessThan(data.length / 2)
      yield* gate.open
      yield* Fiber.join(reader)
      expect(sha256(concat(taken))).toBe(sha256(data))
    }))

  it.live("a connection reset before its end fails the stream with onError", () =>
    Effect.gen(function*() {
      const [near, far] = yield* socketPair
      far.write(Buffer.alloc(1024, 1))
      const exit = yield* ReadableBytes.fromReadable({ evaluate: () => near, onError }).pipe(
        Stream.tap(() => Effect.sync(() => far.resetAndDestroy())),
        Stream.runDrain,
        Effect.exit
      )
      expect(Exit.isFailure(exit)).toBe(true)
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((reason) => reason._tag === "Fail")?.error : undefined
      expect(error).toBeInstanceOf(Broken)
    }))

  it.live("with closeOnDone false, the connection outlives the stream and can still be written", () =>
    Effect.gen(function*() {
      const [near, far] = yield* socketPair
      far.end("question")
      const text = yield* ReadableBytes.fromReadable({ evaluate: () => near, onError, closeOnDone: false }).pipe(
        Stream.decodeText(),
        Stream.mkString
      )
      expect(text).toBe("question")
      expect(near.destroyed).toBe(false)
      near.end("answer")
      const answer = yield* Effect.callback<string>((resume) => {
        let all = ""
        far.setEncoding("utf8")
        far.on("data", (part: string) => (all += part))
        far.once("end", () => resume(Effect.succeed(all)))
      })
      expect(answer).toBe("answer")
    }))
})
