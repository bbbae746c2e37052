/**
 * Reassembles a byte stream into whole lines. Pipes deliver output in chunks that end anywhere
 * (PM2 stamps each chunk and so cuts lines in two); a line is only complete at its `\n`.
 *
 * `\n` never occurs inside a multi-byte UTF-8 sequence, so splitting bytes at `\n` and decoding
 * each line later is exact. A trailing `\r` is dropped. A line longer than `maxLineBytes` is emitted in
 * pieces of at most that size, so memory stays bounded even for a child that never prints `\n`.
 *
 * @since 0.2.0
 */

/**
 * Lines as where they are in one buffer: line `i` is `bytes[bounds[2i], bounds[2i + 1])`,
 * without its newline (and trailing `\r`). No copy, no decoding: the log writes the bytes as
 * they are and decodes only what is read.
 *
 * @since 0.11.0
 */
export interface LineSpans {
  readonly bytes: Buffer
  readonly bounds: ReadonlyArray<number>
}

/**
 * Accumulates chunks and returns the lines they complete.
 *
 * @since 0.2.0
 */
export interface LineAssembler {
  /** Feeds a chunk; returns the lines it completed (possibly none). */
  readonly push: (chunk: Uint8Array) => LineSpans
  /** Returns the unterminated rest, if any, as a last line (call at end of stream). */
  readonly flush: () => LineSpans
}

const NEWLINE = 10
const CR = 13
const none: LineSpans = { bytes: Buffer.alloc(0), bounds: [] }

/**
 * A new, empty assembler.
 *
 * @since 0.2.0
 */
export const makeLineAssembler = (maxLineBytes: number): LineAssembler => {
  let carry: Array<Buffer> = []
  let carryBytes = 0

  const takeCarry = (tail?: Buffer): Buffer => {
    const parts = tail === undefined ? carry : [...carry, tail]
    const joined = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
    carry = []
    carryBytes = 0
    return joined
  }

  /** `[start, end)` (no newline in it) in pieces of at most `maxLineBytes`. */
  const pieces = (start: number, end: number, bounds: Array<number>) => {
    for (let at = start; at < end; at += maxLineBytes) bounds.push(at, Math.min(end, at + maxLineBytes))
  }

  /** The lines of `bytes` (whole lines, without their newlines), long ones in pieces. */
  const split = (bytes: Buffer): LineSpans => {
    const bounds: Array<number> = []
    let start = 0
    while (start <= bytes.length) {
      let end = bytes.indexOf(NEWLINE, start)
      if (end === -1) end = bytes.length
      const last = end > start && bytes[end - 1] === CR ? end - 1 : end
      if (last - start > maxLineBytes) pieces(start, last, bounds)
      else bounds.push(start, last)
      start = end + 1
    }
    return { bytes, bounds }
  }

  return {
    push(chunk) {
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      const last = bytes.lastIndexOf(NEWLINE)
      if (last === -1) {
        carry.push(bytes)
        carryBytes += bytes.length
        if (carryBytes < maxLineBytes) return none
        const long = takeCarry()
        const whole = Math.floor(long.length / maxLineBytes) * maxLineBytes
        if (whole < long.length) {
          carry = [long.subarray(whole)]
          carryBytes = long.length - whole
        }
        const bounds: Array<number> = []
        pieces(0, whole, bounds)
        return { bytes: long, bounds }
      }
      const head = carry.length > 0 ? takeCarry(bytes.subarray(0, last)) : bytes.subarray(0, last)
      const rest = bytes.subarray(last + 1)
      if (rest.length > 0) {
        carry = [rest]
        carryBytes = rest.length
      }
      return split(head)
    },
    flush() {
      if (carryBytes === 0) return none
      const bytes = takeCarry()
      const end = bytes[bytes.length - 1] === CR ? bytes.length - 1 : bytes.length
      // An unterminated `\r` alone is an empty line.
      const bounds: Array<number> = end === 0 ? [0, 0] : []
      pieces(0, end, bounds)
      return { bytes, bounds }
    }
  }
}
