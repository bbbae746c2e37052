/**
 * Who is on the other end of a loopback TCP connection: the OS user that owns the peer's
 * socket, read from the kernel's socket tables (`/proc/net/tcp` and `/proc/net/tcp6`), where
 * each open socket is a line with its local and remote address and its owner's uid.
 *
 * The uid there is the one the kernel stamped on the socket when the peer created it: a process
 * cannot choose it, and while the connection is open its four-tuple (addresses and ports) names
 * exactly one socket. So for a connection accepted from a loopback address, finding the line
 * whose local end is the peer's address and port and whose remote end is ours gives the peer
 * process's user. It is looked up once per connection (a keep-alive connection pays once).
 *
 * Only loopback peers are looked up: a peer on another machine has no line here (and an
 * address of this machine reached over a network interface is not trusted by this rule).
 * Linux only; elsewhere the answer is `undefined` (unknown), which admits nobody.
 *
 * **Cost.** The kernel writes the table by walking every bucket of its established-connections
 * hash (262,144 on this 24 GiB machine): 4–9 ms a read however few sockets are open, spent in
 * the thread pool, not on the event loop. So it is paid once per connection, only by a request
 * that brings no valid token, and lookups share reads (see `read`): a read begun after a
 * connection was accepted is sure to list its socket.
 *
 * @since 0.8.0
 */
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import { isLoopback } from "../transport/Security.ts"

/** An address as a comparable string: IPv4 dotted (also for IPv4-mapped IPv6), IPv6 as 8 full hex groups. */
export const canonicalAddress = (address: string): string => {
  const lower = address.toLowerCase()
  if (!lower.includes(":")) return lower
  const groups = expandIPv6(lower)
  if (groups.slice(0, 5).every((group) => group === "0000") && groups[5] === "ffff") {
    const high = Number.parseInt(groups[6]!, 16)
    const low = Number.parseInt(groups[7]!, 16)
    return [high >> 8, high & 255, low >> 8, low & 255].join(".")
  }
  return groups.join(":")
}

/** The eight 16-bit groups of an IPv6 address, each as 4 hex digits. */
export const expandIPv6 = (address: string): Array<string> => {
  const [head, tail] = address.includes("::") ? address.split("::") as [string, string] : [address, undefined]
  const part = (text: string | undefined) => text === undefined || text === "" ? [] : text.split(":")
  const left = part(head)
  const right = part(tail)
  // A trailing dotted quad is two groups.
  const last = right.length > 0 ? right : left
  const dotted = last.length > 0 && last[last.length - 1]!.includes(".") ? last.pop()!.split(".").map(Number) : undefined
  if (dotted !== undefined) {
    last.push(((dotted[0]! << 8) | dotted[1]!).toString(16), ((dotted[2]! << 8) | dotted[3]!).toString(16))
  }
  const missing = tail === undefined ? 0 : 8 - left.length - right.length
  return [...left, ...Array.from({ length: missing }, () => "0"), ...right].map((group) => group.padStart(4, "0"))
}

const littleEndian = Os.endianness() === "LE"

/** An address of `/proc/net/tcp{,6}` (32-bit words in host byte order, in hex) as {@link canonicalAddress}. */
export const procAddress = (hex: string): string => {
  const bytes: Array<number> = []
  for (let word = 0; word < hex.length; word += 8) {
    const group = Array.from({ length: 4 }, (_, i) => Number.parseInt(hex.slice(word + i * 2, word + i * 2 + 2), 16))
    bytes.push(...(littleEndian ? group.reverse() : group))
  }
  if (bytes.length === 4) return bytes.join(".")
  const groups = Array.from({ length: 8 }, (_, i) => ((bytes[i * 2]! << 8) | bytes[i * 2 + 1]!).toString(16).padStart(4, "0"))
  return canonicalAddress(groups.join(":"))
}

/**
 * The uid owning the socket whose local end is `peer` and remote end is `self`, from the text of
 * a `/proc/net/tcp{,6}` table; `undefined` when no line matches.
 */
export const ownerIn = (
  table: string,
  peer: { readonly address: string; readonly port: number },
  self: { readonly address: string; readonly port: number }
): number | undefined => {
  const peerAddress = canonicalAddress(peer.address)
  const selfAddress = canonicalAddress(self.address)
  const peerPort = peer.port.toString(16).toUpperCase().padStart(4, "0")
  const selfPort = self.port.toString(16).toUpperCase().padStart(4, "0")
  // Only lines holding both ports are split: "  sl  local_address rem_address   st ... uid ...".
  const needle = `:${peerPort} `
  for (let at = table.indexOf(needle); at >= 0; at = table.indexOf(needle, at + 1)) {
    const line = table.slice(table.lastIndexOf("\n", at) + 1, (table.indexOf("\n", at) + 1 || table.length + 1) - 1)
    const fields = line.trim().split(/\s+/)
    const local = fields[1]
    const remote = fields[2]
    if (local === undefined || remote === undefined || !local.endsWith(`:${peerPort}`) || !remote.endsWith(`:${selfPort}`)) continue
    if (procAddress(local.slice(0, -5)) !== peerAddress || procAddress(remote.slice(0, -5)) !== selfAddress) continue
    const uid = Number(fields[7])
    return Number.isInteger(uid) ? uid : undefined
  }
  return undefined
}

const tables = ["/proc/net/tcp", "/proc/net/tcp6"] as const

/** The read in flight per table, with when it began, and the one queued behind it. */
const inflight = new Map<string, { readonly began: number; readonly text: Promise<string> }>()
const queued = new Map<string, Promise<string>>()

const begin = (table: string): Promise<string> => {
  const entry = {
    began: performance.now(),
    text: Fs.readFile(table, "latin1").catch(() => "").finally(() => {
      if (inflight.get(table) === entry) inflight.delete(table)
    })
  }
  inflight.set(table, entry)
  return entry.text
}

/**
 * The text of `table` from a read begun at or after `notBefore` (`performance.now()` time). At
 * most one read of a table runs, and one waits behind it for everyone who came too late for
 * the running one: however many connections arrive, the kernel walks its table back to back,
 * never in parallel.
 */
const read = (table: string, notBefore: number): Promise<string> => {
  const current = inflight.get(table)
  if (current === undefined) return begin(table)
  if (current.began >= notBefore) return current.text
  const waiting = queued.get(table)
  if (waiting !== undefined) return waiting
  const next = current.text.then(() => {
    queued.delete(table)
    return begin(table)
  })
  queued.set(table, next)
  return next
}

/**
 * The uid of the process that owns the peer's end of a loopback TCP connection accepted at
 * `acceptedAt` (`performance.now()` time), or `undefined` when the peer is not on loopback or
 * cannot be found (it has gone, or this is not Linux).
 *
 * @since 0.8.0
 */
export const peerUid = async (socket: {
  readonly remoteAddress?: string | undefined
  readonly remotePort?: number | undefined
  readonly localAddress?: string | undefined
  readonly localPort?: number | undefined
}, acceptedAt: number): Promise<number | undefined> => {
  const { remoteAddress, remotePort, localAddress, localPort } = socket
  if (remoteAddress === undefined || remotePort === undefined || localAddress === undefined || localPort === undefined) return undefined
  if (!isLoopback(remoteAddress)) return undefined
  const peer = { address: remoteAddress, port: remotePort }
  const self = { address: localAddress, port: localPort }
  // The peer's socket is of its own family: an IPv4 client of a dual-stack server is in `tcp`.
  const order = canonicalAddress(remoteAddress).includes(".") ? tables : [...tables].reverse()
  for (const table of order) {
    const uid = ownerIn(await read(table, acceptedAt), peer, self)
    if (uid !== undefined) return uid
  }
  return undefined
}
