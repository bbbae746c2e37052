/**
 * Byte helpers for stream tests.
 */
import { Effect, Option, Stream } from "effect"
import * as Crypto from "node:crypto"
import * as Net from "node:net"

/** `data` as a stream of `chunk`-sized pieces (views, no copies). */
export const chunked = (data: Uint8Array, chunk = 64 * 1024) =>
  Stream.fromIterable(Array.from({ length: Math.ceil(data.length / chunk) }, (_, i) => data.subarray(i * chunk, (i + 1) * chunk)))

/** The SHA-256 of `bytes`, in hex. */
export const sha256 = (bytes: Uint8Array) => Crypto.createHash("sha256").update(bytes).digest("hex")

/** The chunks of a collected stream, joined. */
export const concat = (chunks: ReadonlyArray<Uint8Array>) => Buffer.concat(chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength)))

/** The stream's text once it is at least `length` characters long (the stream may go on). */
export const textUntil = <E, R>(bytes: Stream.Stream<Uint8Array, E, R>, length: number) =>
  bytes.pipe(
    Stream.decodeText(),
    Stream.scan(() => "", (all: string, text: string) => all + text),
    Stream.takeUntil((all) => all.length >= length),
    Stream.runLast,
    Effect.map(Option.getOrElse(() => ""))
  )

/** Two ends of a loopback TCP connection, destroyed with the scope. */
export const socketPair = Effect.acquireRelease(
  Effect.callback<readonly [Net.Socket, Net.Socket]>((resume) => {
    const server = Net.createServer({ allowHalfOpen: true }, (near) => {
      server.close()
      resume(Effect.succeed([near, far] as const))
    })
    let far: Net.Socket
    server.listen(0, "127.0.0.1", () => {
      far = Net.connect({ host: "127.0.0.1", port: (server.address() as Net.AddressInfo).port, allowHalfOpen: true })
    })
  }),
  ([near, far]) => Effect.sync(() => {
    near.destroy()
    far.destroy()
  })
)
