/**
 * `npm start` (src/main.ts) on the embedded default: it brings the store and a runner up, a probe
 * answers, and SIGINT (Ctrl-C) or SIGTERM leaves no runner and no Postgres behind. Bad settings
 * (and a second runner on a state directory in use) end it with a one-line reason.
 */
import { describe, expect, it } from "vitest"
import { useProcesses } from "../support/harness.ts"
import { postmasterPid, useHomes } from "../support/homes.ts"
import { eventually, freePort, isAlive } from "../support/processes.ts"

describe("npm start", () => {
  // Registered first so that it runs last: after-hooks run in reverse order, processes die first.
  const tempHome = useHomes("shardhub-start-")
  const processes = useProcesses()

  const start = async (env: Record<string, string> = {}) => {
    const home = await tempHome()
    const port = await freePort()
    const main = processes.spawn("npm-start", "src/main.ts", {
      env: { SHARDHUB_HOME: home, DATABASE_URL: "", SHARDHUB_RUNNER_PORT: String(port), SHARDHUB_STORE_DURABLE: "false", ...env }
    })
    return { main, home, port }
  }

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`serves on the embedded store and stops everything on ${signal}`, async () => {
      const { main, home, port } = await start()
      await main.waitFor(/^ready/m, 60_000)
      expect(main.output()).toContain(`shardhub runner  127.0.0.1:${port} (pid ${main.pid})`)
      // The embedded store is reached through its unix socket: no TCP port.
      expect(main.output()).toContain(
        `cluster store    postgres://shardhub:***@localhost:5432/shardhub?host=${encodeURIComponent(`${home}/postgres/socket`)} (embedded, data in ${home}/postgres/data)`
      )
      expect(main.output()).toMatch(new RegExp(`probe            answered from 127\\.0\\.0\\.1:${port} in \\d+ ms`))
      const postgresPid = (await postmasterPid(home))!
      expect(isAlive(postgresPid)).toBe(true)

      const exit = await main.kill(signal)
      expect(exit.signal === null && exit.code !== null).toBe(true)
      await eventually(async () => !isAlive(postgresPid) || undefined, { timeoutMs: 15_000, what: "Postgres to stop" })
      // It ended by itself, with no failure to report.
      expect(main.output()).not.toMatch(/^shardhub: /m)
    })
  }

  it("says why when the runner port is taken", async () => {
    const first = await start()
    await first.main.waitFor(/^ready/m, 60_000)
    const second = await start({ SHARDHUB_RUNNER_PORT: String(first.port) })
    const exit = await second.main.exited
    expect(exit.code).toBe(1)
    expect(second.main.output()).toContain(
      `shardhub: could not listen on 127.0.0.1:${first.port}: Error: listen EADDRINUSE`
    )
    expect(second.main.output()).toContain("set SHARDHUB_RUNNER_PORT to another port")
  })

  it("refuses a second runner on the same process state directory", async () => {
    const first = await start()
    await first.main.waitFor(/^ready/m, 60_000)
    const stateDir = `${first.home}/runners/127.0.0.1-${first.port}`
    expect(first.main.output()).toContain(`processes        state in ${stateDir}\n`)
    const second = await start({ SHARDHUB_RUNNER_STATE_DIR: stateDir })
    const exit = await second.main.exited
    expect(exit.code).toBe(1)
    expect(second.main.output()).toContain(
      `shardhub: the state directory ${stateDir} is in use by process ${first.main.pid}`
    )
  })

  it("says why when a setting is malformed", async () => {
    const { main } = await start({ SHARDHUB_SHARD_LOCK_EXPIRATION: "soon" })
    const exit = await main.exited
    expect(exit.code).toBe(1)
    expect(main.output()).toMatch(/^shardhub: [^\n]*Expected a valid Duration string\s+at \["SHARDHUB_SHARD_LOCK_EXPIRATION"\]/m)
  })

  it("says why when the store is unreachable, without showing its password", async () => {
    const closedPort = await freePort()
    const { main } = await start({ DATABASE_URL: `postgres://someone:hunter2@127.0.0.1:${closedPort}/db` })
    const exit = await main.exited
    expect(exit.code).toBe(1)
    expect(main.output()).toContain(
      `shardhub: could not connect to the cluster store at postgres://someone:***@127.0.0.1:${closedPort}/db: `
    )
    expect(main.output()).toContain("ECONNREFUSED")
    expect(main.output()).not.toContain("hunter2")
  })
})
