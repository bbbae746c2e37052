/**
 * Line assembly and message framing are exact whatever the read boundaries: every input is fed
 * to the decoders cut at random points (many iterations), and must come out whole.
 */
import { describe, expect, it } from "@effect/vitest"
import { codec } from "../../src/process/Framing.ts"
import { type LineSpans, makeLineAssembler } from "../../src/process/Lines.ts"

/** The text of each line, each decoded alone (what a reader of the log gets). */
const text = (lines: LineSpans): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < lines.bounds.length; i += 2) out.push(lines.bytes.toString("utf8", lines.bounds[i], lines.bounds[i + 1]))
  return out
}

/** A seeded generator, so a failure can be replayed. */
const random = (seed: number) => () => {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
}

const cutRandomly = (bytes: Buffer, next: () => number): Array<Buffer> => {
  const pieces: Array<Buffer> = []
  let at = 0
  while (at < bytes.length) {
    const size = 1 + Math.floor(next() * (next() < 0.2 ? 5 : 9000))
    pieces.push(bytes.subarray(at, at + size))
    at += size
  }
  return pieces
}

describe("line assembly", () => {
  it("reassembles lines (multi-byte characters included) cut at any byte", () => {
    const next = random(7)
    for (let iteration = 0; iteration < 200; iteration++) {
      const lines = Array.from({ length: 1 + Math.floor(next() * 300) }, (_, i) => `${i} ${"é€😀x".repeat(Math.floor(next() * 40))}`)
      const assembler = makeLineAssembler(64 * 1024)
      const out: Array<string> = []
      for (const piece of cutRandomly(Buffer.from(lines.join("\n") + "\n"), next)) out.push(...text(assembler.push(piece)))
      out.push(...text(assembler.flush()))
      expect(out).toEqual(lines)
    }
  })

  it("keeps an unterminated last line, drops a trailing CR, and bounds a line without newline", () => {
    const assembler = makeLineAssembler(8)
    expect(text(assembler.push(Buffer.from("crlf\r\nab")))).toEqual(["crlf"])
    expect(text(assembler.push(Buffer.from("cdefghij")))).toEqual(["abcdefgh"])
    expect(text(assembler.push(Buffer.from("kl\n0123456789ab\n")))).toEqual(["ijkl", "01234567", "89ab"])
    expect(text(assembler.push(Buffer.from("tail")))).toEqual([])
    expect(text(assembler.push(Buffer.from("\r\n\n")))).toEqual(["tail", ""])
    expect(text(assembler.push(Buffer.from("cr at the end\r")))).toEqual(["cr at th"])
    expect(text(assembler.flush())).toEqual(["e end"])
    expect(text(assembler.flush())).toEqual([])
  })
})

describe("message framing", () => {
  for (const name of ["ndjson", "msgpack"] as const) {
    it(`${name}: messages cut at any byte come out whole and in order`, () => {
      const next = random(11)
      const { decoder, encode } = codec(name)
      for (let iteration = 0; iteration < 100; iteration++) {
        const messages = Array.from({ length: 1 + Math.floor(next() * 50) }, (_, n) => ({
          n,
          text: "line\nbreak ü".repeat(Math.floor(next() * 100)),
          list: [1, null, true, { nested: "x" }]
        }))
        const decode = decoder(1024 * 1024)
        const out: Array<unknown> = []
        for (const piece of cutRandomly(Buffer.concat(messages.map(encode)), next)) {
          const decoded = decode.push(piece)
          expect(decoded.errors).toEqual([])
          out.push(...decoded.messages)
        }
        expect(out).toEqual(messages)
      }
    })
  }

  it("ndjson: a malformed or oversized line is reported and the stream goes on", () => {
    const decode = codec("ndjson").decoder(32)
    const first = decode.push(Buffer.from(`{"ok":1}\nnot json\n{"big":"${"x".repeat(40)}`))
    expect(first.messages).toEqual([{ ok: 1 }])
    expect(first.errors).toHaveLength(2)
    expect(first.errors[0]).toMatch(/malformed JSON/)
    expect(first.errors[1]).toMatch(/exceeds the limit/)
    const second = decode.push(Buffer.from(`"}\n{"ok":2}\n`))
    expect(second).toEqual({ messages: [{ ok: 2 }], errors: [], fatal: false })
  })

  it("msgpack: an oversized length prefix closes the channel instead of buffering it", () => {
    const decode = codec("msgpack").decoder(1024)
    const header = Buffer.alloc(4)
    header.writeUInt32BE(1 << 30)
    const decoded = decode.push(Buffer.concat([codec("msgpack").encode({ ok: 1 }), header]))
    expect(decoded.messages).toEqual([{ ok: 1 }])
    expect(decoded.fatal).toBe(true)
    expect(decode.push(codec("msgpack").encode({ ok: 2 })).fatal).toBe(true)
  })
})
