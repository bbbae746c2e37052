/**
 * Frames for the message channel between a runner and its child: every message is delivered
 * whole, never split at a read boundary and never merged with its neighbour (proc-heim cuts
 * messages at every 4 KiB read).
 *
 * Two codecs, chosen per process:
 * - `ndjson`: one JSON value per line (`JSON.stringify` never emits a raw newline).
 * - `msgpack`: a 4-byte big-endian length, then a MessagePack body.
 *
 * @since 0.2.0
 */
import { Decoder as MsgpackDecoder, Encoder as MsgpackEncoder } from "@msgpack/msgpack"
import type { MessageCodec } from "./ProcessSpec.ts"

/**
 * What a decoder found in a chunk: whole messages, and frames it could not decode.
 *
 * @since 0.2.0
 */
export interface Decoded {
  readonly messages: Array<unknown>
  readonly errors: Array<string>
  /** The stream cannot be resynchronised (e.g. an oversized length prefix); stop reading. */
  readonly fatal: boolean
}

/**
 * A stateful decoder for one direction of one channel.
 *
 * @since 0.2.0
 */
export interface Decoder {
  readonly push: (chunk: Buffer) => Decoded
}

/**
 * Encodes and decodes one codec.
 *
 * @since 0.2.0
 */
export interface Codec {
  readonly encode: (message: unknown) => Buffer
  readonly decoder: (maxMessageBytes: number) => Decoder
}

const msgpackEncoder = new MsgpackEncoder()
const msgpackDecoder = new MsgpackDecoder()

const ndjson: Codec = {
  encode: (message) => Buffer.from(JSON.stringify(message) + "\n", "utf8"),
  decoder(maxMessageBytes) {
    let carry: Array<Buffer> = []
    let carryBytes = 0
    let skipping = false
    return {
      push(chunk) {
        const messages: Array<unknown> = []
        const errors: Array<string> = []
        let start = 0
        for (;;) {
          const nl = chunk.indexOf(10, start)
          if (nl === -1) break
          if (skipping) {
            skipping = false
          } else {
            const part = chunk.subarray(start, nl)
            const frame = carryBytes > 0 ? Buffer.concat([...carry, part]) : part
            if (frame.length > maxMessageBytes) {
              errors.push(`message of ${frame.length} bytes exceeds the limit of ${maxMessageBytes}`)
            } else if (frame.length > 0) {
              try {
                messages.push(JSON.parse(frame.toString("utf8")))
              } catch (error) {
                errors.push(`malformed JSON message: ${(error as Error).message}`)
              }
            }
          }
          carry = []
          carryBytes = 0
          start = nl + 1
        }
        if (start < chunk.length && !skipping) {
          const rest = chunk.subarray(start)
          carry.push(rest)
          carryBytes += rest.length
          if (carryBytes > maxMessageBytes) {
            errors.push(`message exceeds the limit of ${maxMessageBytes} bytes`)
            carry = []
            carryBytes = 0
            skipping = true
          }
        }
        return { messages, errors, fatal: false }
      }
    }
  }
}

const msgpack: Codec = {
  encode(message) {
    const body = msgpackEncoder.encode(message)
    const frame = Buffer.allocUnsafe(4 + body.length)
    frame.writeUInt32BE(body.length, 0)
    frame.set(body, 4)
    return frame
  },
  decoder(maxMessageBytes) {
    let buffer: Buffer = Buffer.alloc(0)
    let broken = false
    return {
      push(chunk) {
        const messages: Array<unknown> = []
        const errors: Array<string> = []
        if (broken) return { messages, errors, fatal: true }
        buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
        let at = 0
        while (buffer.length - at >= 4) {
          const size = buffer.readUInt32BE(at)
          if (size > maxMessageBytes) {
            broken = true
            errors.push(`message of ${size} bytes exceeds the limit of ${maxMessageBytes}; channel closed`)
            return { messages, errors, fatal: true }
          }
          if (buffer.length - at - 4 < size) break
          try {
            messages.push(msgpackDecoder.decode(buffer.subarray(at + 4, at + 4 + size)))
          } catch (error) {
            errors.push(`malformed MessagePack message: ${(error as Error).message}`)
          }
          at += 4 + size
        }
        buffer = at === buffer.length ? Buffer.alloc(0) : Buffer.from(buffer.subarray(at))
        return { messages, errors, fatal: false }
      }
    }
  }
}

/**
 * The codec for a name.
 *
 * @since 0.2.0
 */
export const codec = (name: MessageCodec): Codec => name === "msgpack" ? msgpack : ndjson
