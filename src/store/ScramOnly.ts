/**
 * A store connection that never sends its password where it could be read: the connection
 * refuses a server that asks for it in cleartext (`AuthenticationCleartextPassword`) or as MD5
 * (`AuthenticationMD5Password`, a hash anyone who sees it can replay against the same salt or
 * crack offline) and goes on only with SCRAM-SHA-256, where the server must prove it knows the
 * password's verifier and nothing reusable crosses the wire.
 *
 * Why: a Postgres on TCP leaves its port free for anyone to bind the moment the postmaster
 * dies; a local user who binds it first is then asked by every pool to authenticate, and a
 * client that answers a cleartext request hands over the superuser password (tried: 7 ms after
 * a crash). `@effect/sql-pg` answers whatever the server asks, so the check sits below it, in
 * the byte stream: the backend's messages are read until authentication ends (`AuthenticationOk`
 * or an error), then passed through untouched.
 *
 * TLS connections (`sslmode=require`/`verify-*`) are left as they are: the server's certificate
 * is verified before any password is sent, and the bytes here would be ciphertext.
 *
 * @since 0.8.0
 */
import * as Net from "node:net"
import { Duplex } from "node:stream"

/** Backend message `R` (Authentication) codes. */
const authentication = { ok: 0, cleartext: 3, md5: 5 } as const

/**
 * Reads backend messages until authentication has ended: `"pass"` once it has (or the server
 * sent an error), `"refuse"` with the reason on a password request other than SASL, `"more"`
 * while the messages so far are not enough to tell.
 */
export const authenticationVerdict = (bytes: Uint8Array): { readonly _tag: "pass" | "more" } | { readonly _tag: "refuse"; readonly reason: string } => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let offset = 0
  while (offset + 5 <= bytes.length) {
    const type = bytes[offset]
    const length = view.getInt32(offset + 1)
    if (type === 0x45 /* E */) return { _tag: "pass" }
    if (type === 0x52 /* R */) {
      if (offset + 9 > bytes.length) return { _tag: "more" }
      const code = view.getInt32(offset + 5)
      if (code === authentication.ok) return { _tag: "pass" }
      if (code === authentication.cleartext) return { _tag: "refuse", reason: "asked for the password in cleartext" }
      if (code === authentication.md5) return { _tag: "refuse", reason: "asked for the password as MD5" }
    }
    offset += 1 + length
  }
  return { _tag: "more" }
}

/**
 * Where a connection URL points, for {@link connection}: a socket path, or a TCP host and port;
 * `undefined` when it asks for TLS.
 */
export const targetOf = (url: string): { readonly path: string } | { readonly host: string; readonly port: number } | undefined => {
  const parsed = new URL(url)
  const sslmode = parsed.searchParams.get("sslmode")
  if (sslmode !== null && sslmode !== "disable") return undefined
  const host = parsed.searchParams.get("host") ?? (decodeURIComponent(parsed.hostname.replace(/^\[|\]$/g, "")) || "localhost")
  const port = Number(parsed.searchParams.get("port") ?? (parsed.port || 5432))
  return host.startsWith("/") ? { path: `${host}/.s.PGSQL.${port}` } : { host, port }
}

/**
 * The connection for `@effect/sql-pg`'s `stream` option: a socket to `target` whose
 * authentication is checked as described above. A refused server gets the socket closed
 * before the password is written, and the pool an error that says why.
 *
 * @since 0.8.0
 */
export const connection = (target: { readonly path: string } | { readonly host: string; readonly port: number }): Duplex => {
  const socket = "path" in target ? Net.connect({ path: target.path }) : Net.connect({ host: target.host, port: target.port, noDelay: true })
  const where = "path" in target ? target.path : `${target.host}:${target.port}`
  let watching = true
  let seen: Buffer = Buffer.alloc(0)
  const duplex = new Duplex({
    read() {
      socket.resume()
    },
    write(chunk, _encoding, callback) {
      socket.write(chunk, callback)
    },
    final(callback) {
      socket.end(callback)
    },
    destroy(error, callback) {
      socket.destroy()
      callback(error)
    }
  })
  socket.on("data", (chunk: Buffer) => {
    if (watching) {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk])
      const verdict = authenticationVerdict(seen)
      if (verdict._tag === "refuse") {
        socket.destroy()
        duplex.destroy(new Error(
          `the Postgres server at ${where} ${verdict.reason}; shardhub sends passwords only over SCRAM-SHA-256 ` +
            "(set password_encryption = 'scram-sha-256' and a 'scram-sha-256' line in pg_hba.conf, or use TLS: sslmode=verify-full)"
        ))
        return
      }
      if (verdict._tag === "pass") {
        watching = false
        seen = Buffer.alloc(0)
      }
    }
    if (!duplex.push(chunk)) socket.pause()
  })
  socket.on("end", () => duplex.push(null))
  socket.on("error", (error) => duplex.destroy(error))
  socket.on("close", () => duplex.destroy())
  return duplex
}
