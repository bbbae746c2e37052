/**
 * The loopback handshake: mutual authentication with the cluster key, without encryption, for
 * connections whose both ends are on this machine's loopback interface.
 *
 * Why: on loopback nobody but root can read or inject the bytes of a TCP connection between two
 * other processes, so encryption buys nothing there, while Node's TLS costs about 60 % of a
 * loopback stream's throughput (measured: a two-process echo at 250–270 MiB/s with TLS 1.3
 * against 670 MiB/s plain). What loopback does need is proof, both ways, that the other end
 * holds the cluster key — which this gives. Between machines, TLS (see `Security`) does both.
 *
 * The protocol (lines of ASCII, at most {@link maxLine} bytes each):
 * 1. dialer → server: `SHK1 <key id> <dialer nonce>`
 * 2. server → dialer: `<server nonce> <server proof>`
 * 3. dialer → server: `<dialer proof>`; from then on the connection is the application's.
 *
 * A proof is HMAC-SHA256 with the key over the role, both nonces and the port the dialer dialled,
 * so it is good for one connection to one listener only: it cannot be replayed, and a
 * connection relayed to another listener fails. The server proves itself first, so a dialer
 * never sends its proof to an impostor.
 *
 * @since 0.5.0
 */
import * as Crypto from "node:crypto"
import type * as Net from "node:net"

/**
 * The first byte of a loopback handshake (`S`); a TLS connection starts with 0x16.
 *
 * @since 0.5.0
 */
export const firstByte = 0x53

/**
 * The longest handshake line.
 *
 * @since 0.5.0
 */
export const maxLine = 160

/**
 * A key as the handshake needs it.
 *
 * @since 0.5.0
 */
export interface Key {
  readonly id: string
  readonly secret: Buffer
}

const nonce = () => Crypto.randomBytes(16).toString("hex")

const proof = (key: Key, role: "server" | "dialer", dialerNonce: string, serverNonce: string, port: number) =>
  Crypto.createHmac("sha256", key.secret).update(`shk1 ${role} ${dialerNonce} ${serverNonce} ${port}`).digest()

const matches = (expected: Buffer, hex: string | undefined) => {
  const given = Buffer.from(hex ?? "", "hex")
  return given.length === expected.length && Crypto.timingSafeEqual(given, expected)
}

/**
 * Reads one line (without its newline) from `socket`, puts whatever followed it back and leaves
 * the socket paused; `undefined` when the socket ended, failed, or sent more than `limit` bytes
 * without a newline.
 *
 * @since 0.5.0
 */
export const readLine = (socket: Net.Socket, onLine: (line: string | undefined) => void, limit = maxLine) => {
  let buffered: Buffer = Buffer.alloc(0)
  const cleanup = () => {
    socket.off("data", onData)
    socket.off("end", onEnd)
    socket.off("error", onEnd)
  }
  const onData = (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
    const newline = buffered.indexOf(10)
    if (newline < 0) {
      if (buffered.length > limit) {
        cleanup()
        onLine(undefined)
      }
      return
    }
    cleanup()
    socket.pause()
    const rest = buffered.subarray(newline + 1)
    if (rest.length > 0) socket.unshift(rest)
    onLine(buffered.subarray(0, newline).toString("latin1"))
  }
  const onEnd = () => {
    cleanup()
    onLine(undefined)
  }
  socket.on("data", onData)
  socket.on("end", onEnd)
  socket.on("error", onEnd)
}

/**
 * The server's side, on a connection whose first byte was {@link firstByte} (paused, that byte
 * put back). `find` looks a key up by id; `done` gets the key that authenticated the dialer, or
 * why it was refused; the socket is left paused.
 *
 * @since 0.5.0
 */
export const serve = (
  socket: Net.Socket,
  find: (id: string) => Key | undefined,
  done: (outcome: { readonly key: Key } | { readonly refused: string }) => void
) => {
  readLine(socket, (hello) => {
    const [magic, id, dialerNonce] = hello?.split(" ") ?? []
    if (magic !== "SHK1" || id === undefined || dialerNonce === undefined || !/^[0-9a-f]{32}$/.test(dialerNonce)) {
      return done({ refused: "not a shardhub handshake" })
    }
    const key = find(id)
    if (key === undefined) return done({ refused: `unknown cluster key '${id.slice(0, 40).replace(/[^\w.-]/g, "?")}'` })
    const serverNonce = nonce()
    const port = socket.localPort ?? 0
    socket.write(`${serverNonce} ${proof(key, "server", dialerNonce, serverNonce, port).toString("hex")}\n`)
    readLine(socket, (answer) => {
      if (answer === undefined) return done({ refused: "closed during the handshake" })
      if (!matches(proof(key, "dialer", dialerNonce, serverNonce, port), answer)) return done({ refused: "wrong cluster key" })
      done({ key })
    })
    socket.resume()
  })
  socket.resume()
}

/**
 * The dialer's side, on a connected socket to `port`: resolves `done` with undefined once both
 * sides proved the key, or with why not. The socket is left paused.
 *
 * @since 0.5.0
 */
export const dial = (socket: Net.Socket, key: Key, port: number, done: (error: string | undefined) => void) => {
  const dialerNonce = nonce()
  socket.write(`SHK1 ${key.id} ${dialerNonce}\n`)
  readLine(socket, (line) => {
    const [serverNonce, serverProof] = line?.split(" ") ?? []
    if (line === undefined || serverNonce === undefined) return done("the listener closed the connection during the handshake")
    if (!matches(proof(key, "server", dialerNonce, serverNonce, port), serverProof)) {
      return done("the listener does not hold the cluster key")
    }
    socket.write(`${proof(key, "dialer", dialerNonce, serverNonce, port).toString("hex")}\n`)
    done(undefined)
  })
}
