/**
 * Which users and groups a spec may name: any the system knows, through NSS, not only the
 * local files.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { afterAll, describe, expect, it } from "vitest"
import * as Confinement from "../../src/process/Confinement.ts"

// A user only NSS knows: a systemd userdb drop-in record (read by nss-systemd), not in /etc/passwd.
const name = `shnss${process.pid}`
const record = `/run/userdb/${name}.user`
const nssUser = (() => {
  if (process.getuid?.() !== 0) return "needs root, to add a userdb record"
  try {
    Fs.mkdirSync("/run/userdb", { recursive: true })
    Fs.writeFileSync(record, JSON.stringify({ userName: name, uid: 61_000 + (process.pid % 1000), gid: 61_000 + (process.pid % 1000) }))
    ChildProcess.execFileSync("getent", ["passwd", name])
    return undefined
  } catch {
    Fs.rmSync(record, { force: true })
    return "this system's NSS does not read systemd userdb records"
  }
})()
afterAll(() => Fs.rmSync(record, { force: true }))

describe("confinement identities", () => {
  it.skipIf(nssUser !== undefined)("finds a user that only NSS knows (LDAP, SSSD, userdb), not only /etc/passwd", () => {
    expect(Fs.readFileSync("/etc/passwd", "utf8")).not.toContain(`${name}:`)
    const id = 61_000 + (process.pid % 1000)
    expect(Confinement.identity(name, undefined)).toEqual({ uid: id, gid: id })
  })

  it("refuses names no database knows", () => {
    expect(Confinement.identity("no-such-user-anywhere", undefined)).toMatchObject({ _tag: "SpawnError", reason: "InvalidSpec", message: "no such user: no-such-user-anywhere" })
  })
})
