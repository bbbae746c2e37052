/**
 * Reassembles a byte stream into whole lines. Pipes deliver output in chunks that end anywhere
 * (PM2 stamps each chunk and so cuts lines in two); a line is only complete at its `\n`.
 *
 * `\n` never occurs inside a multi-byte UTF-8 sequence, so splitting bytes at `\n` and decoding
 * each line is exact. A trailing `\r` is dropped. A line longer than `maxLineBytes` is emitted in
 * pieces of at most that size, so memory stays bounded even for a child that never prints `\n`.
 *
 * @since 0.2.0
 */

/**
 * Accumulates chunks and returns the lines they complete.
 *
 * @since 0.2.0
 */
export interface LineAssembler {
  /** Feeds a chunk; returns the lines it completed (possibly none). */
  readonly push: (chunk: Uint8Array) => ReadonlyArray<string>
  /** Returns the unterminated rest, if any, as a last line (call at end of stream). */
  readonly flush: () => ReadonlyArray<string>
}

const NEWLINE = 10

const stripCr = (line: string): string => line.endsWith("\r") ? line.slice(0, -1) : line

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

  const pieces = (bytes: Buffer): Array<string> => {
    const out: Array<string> = []
    for (let at = 0; at < bytes.length; at += maxLineBytes) {
      out.push(bytes.toString("utf8", at, Math.min(bytes.length, at + maxLineBytes)))
    }
    return out
  }

  return {
    push(chunk) {
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      const last = bytes.lastIndexOf(NEWLINE)
      if (last === -1) {
        carry.push(bytes)
        carryBytes += bytes.length
        if (carryBytes < maxLineBytes) return []
        const long = takeCarry()
        const whole = Math.floor(long.length / maxLineBytes) * maxLineBytes
        const rest = long.subarray(whole)
        if (rest.length > 0) {
          carry = [rest]
          carryBytes = rest.length
        }
        return pieces(long.subarray(0, whole))
      }
      const head = carry.length > 0 ? takeCarry(bytes.subarray(0, last)) : bytes.subarray(0, last)
      const rest = bytes.subarray(last + 1)
      if (rest.length > 0) {
        carry = [rest]
        carryBytes = rest.length
      }
      const lines = head.length > maxLineBytes ? splitLong(head, maxLineBytes, pieces) : head.toString("utf8").split("\n")
      for (let i = 0; i < lines.length; i++) lines[i] = stripCr(lines[i]!)
      return lines
    },
    flush() {
      if (carryBytes === 0) return []
      return pieces(takeCarry()).map(stripCr)
    }
  }
}

const splitLong = (
  bytes: Buffer,
  maxLineBytes: number,
  pieces: (bytes: Buffer) => Array<string>
): Array<string> => {
  const out: Array<string> = []
  let start = 0
  while (start <= bytes.length) {
    let end = bytes.indexOf(NEWLINE, start)
    if (end === -1) end = bytes.length
    const line = bytes.subarray(start, end)
    if (line.length > maxLineBytes) out.push(...pieces(line))
    else out.push(line.toString("utf8"))
    start = end + 1
  }
  return out
}
