/**
 * The gateway's connections: who is at the other end, and how many of them it keeps.
 *
 * A connection starts **unproven** and becomes **proven** when a request on it is admitted
 * (the caller is the owner, or sent the token). The two are bounded apart, so that connections
 * nobody has vouched for cannot starve those that are in use:
 *
 * - Unproven connections have a budget of their own — `maxUnproven` in all and
 *   `maxUnprovenPerAddress` from one address — and at the budget the **oldest** unproven one
 *   makes room for the new one (a client that sends its request at once is proven within a
 *   round trip; a slow-header connection is the one that goes). An unproven connection that is
 *   idle `unprovenTimeout` after it opened is closed.
 * - Every connection counts against `maxConnectionsPerAddress`, where an address at its cap
 *   first loses its idle keep-alive connections (between requests): a client that pools
 *   connections without reusing them (the published api-client does, leaving response bodies
 *   unread) would otherwise be refused after 128 requests in Node's 5 s of idle keep-alive.
 *   Connections with a request in progress (a stream) are never taken.
 * - An "address" is an IPv4 address, or an IPv6 /64 (one host commonly holds a whole /64).
 *
 * @since 0.8.0
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http"
import type { Socket } from "node:net"
import * as PeerCredentials from "./PeerCredentials.ts"

/** @since 0.8.0 */
export interface Limits {
  readonly maxConnectionsPerAddress: number
  readonly maxUnproven: number
  readonly maxUnprovenPerAddress: number
  readonly unprovenTimeoutMs: number
}

/**
 * The key connections are counted by: the IPv4 address, or the /64 of an IPv6 one.
 *
 * @since 0.8.0
 */
export const addressKey = (address: string): string => {
  const canonical = PeerCredentials.canonicalAddress(address)
  return canonical.includes(":") ? `${canonical.split(":").slice(0, 4).join(":")}::/64` : canonical
}

/** @since 0.8.0 */
export interface Connections {
  /** The uid of a loopback peer's process (looked up once per connection); `undefined` when unknown. */
  readonly peerUid: (socket: Socket) => Promise<number | undefined>
  /** Marks a connection proven: a request on it was admitted. */
  readonly prove: (socket: Socket) => void
}

/**
 * Tracks `server`'s connections under `limits`.
 *
 * @since 0.8.0
 */
export const track = (server: Server, limits: Limits): Connections => {
  const perAddress = new Map<string, Set<Socket>>()
  const unprovenPerAddress = new Map<string, Set<Socket>>()
  /** Oldest first (a Set keeps insertion order). */
  const unproven = new Set<Socket>()
  const timers = new Map<Socket, NodeJS.Timeout>()
  const idle = new Set<Socket>()
  /** Unproven connections past their time, closed when their request in progress ends. */
  const expired = new WeakSet<Socket>()
  /** Each connection's peer uid, once looked up. */
  const uids = new WeakMap<Socket, Promise<number | undefined>>()
  const acceptedAt = new WeakMap<Socket, number>()

  const add = (map: Map<string, Set<Socket>>, key: string, socket: Socket) => {
    const set = map.get(key) ?? new Set<Socket>()
    set.add(socket)
    map.set(key, set)
  }
  const remove = (map: Map<string, Set<Socket>>, key: string, socket: Socket) => {
    const set = map.get(key)
    if (set === undefined) return
    set.delete(socket)
    if (set.size === 0) map.delete(key)
  }
  const settle = (socket: Socket, key: string) => {
    unproven.delete(socket)
    remove(unprovenPerAddress, key, socket)
    clearTimeout(timers.get(socket))
    timers.delete(socket)
  }
  const keyOf = new WeakMap<Socket, string>()
  /**
   * Closes `socket` and stops counting it at once (its `close` event comes later: a burst of
   * new connections would otherwise find the budget still full of sockets already closed).
   */
  const evict = (socket: Socket) => {
    const key = keyOf.get(socket)
    if (key !== undefined) {
      settle(socket, key)
      remove(perAddress, key, socket)
    }
    idle.delete(socket)
    socket.destroy()
  }

  const inProgress = new WeakSet<Socket>()
  const active = (socket: Socket) => inProgress.has(socket)
  server.on("request", (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket
    idle.delete(socket)
    inProgress.add(socket)
    response.once("close", () => inProgress.delete(socket))
    response.once("finish", () => {
      if (expired.has(socket) && unproven.has(socket)) socket.destroy()
      else if (!socket.destroyed) idle.add(socket)
    })
  })
  server.on("connection", (socket: Socket) => {
    const key = addressKey(socket.remoteAddress ?? "-")
    keyOf.set(socket, key)
    const open = perAddress.get(key)
    if (open !== undefined && open.size >= limits.maxConnectionsPerAddress) {
      const spare = [...open].find((other) => idle.has(other))
      if (spare === undefined) {
        socket.destroy()
        return
      }
      evict(spare)
    }
    const mine = unprovenPerAddress.get(key)
    if (mine !== undefined && mine.size >= limits.maxUnprovenPerAddress) evict(mine.values().next().value!)
    if (unproven.size >= limits.maxUnproven) evict(unproven.values().next().value!)
    acceptedAt.set(socket, performance.now())
    add(perAddress, key, socket)
    add(unprovenPerAddress, key, socket)
    unproven.add(socket)
    timers.set(
      socket,
      setTimeout(() => {
        // Still unproven: closed now, or after the answer in progress (a dashboard file, a refusal).
        if (!unproven.has(socket)) return
        if (active(socket)) expired.add(socket)
        else socket.destroy()
      }, limits.unprovenTimeoutMs).unref()
    )
    socket.once("close", () => {
      settle(socket, key)
      idle.delete(socket)
      remove(perAddress, key, socket)
    })
  })

  return {
    peerUid: (socket) => {
      let uid = uids.get(socket)
      if (uid === undefined) {
        uid = PeerCredentials.peerUid(socket, acceptedAt.get(socket) ?? 0)
        uids.set(socket, uid)
      }
      return uid
    },
    prove: (socket) => {
      const key = keyOf.get(socket)
      if (key !== undefined && unproven.has(socket)) settle(socket, key)
    }
  }
}
