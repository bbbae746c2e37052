/**
 * Temporary SHARDHUB_HOMEs for tests that use the embedded store of their own, removed after
 * each test together with any Postgres server a failed or SIGKILLed test left running in them.
 */
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterEach } from "vitest"
import { eventually, isAlive } from "./processes.ts"

/** The pid in `<home>/postgres/data/postmaster.pid`, if the file is there. */
export const postmasterPid = async (home: string): Promise<number | undefined> => {
  const text = await Fs.readFile(Path.join(home, "postgres/data/postmaster.pid"), "utf8").catch(() => "")
  const pid = Number.parseInt(text.split("\n")[0] ?? "", 10)
  return Number.isInteger(pid) ? pid : undefined
}

/**
 * Returns a function that makes a fresh temporary home; registers the cleanup.
 */
export const useHomes = (prefix: string) => {
  const homes: Array<string> = []
  afterEach(async () => {
    for (const home of homes.splice(0)) {
      const pid = await postmasterPid(home)
      if (pid !== undefined && isAlive(pid)) {
        process.kill(pid, "SIGQUIT")
        await eventually(async () => !isAlive(pid) || undefined, { what: `the leftover server ${pid} to exit` })
      }
      await Fs.rm(home, { recursive: true, force: true })
    }
  })
  return async () => {
    const home = await Fs.mkdtemp(Path.join(Os.tmpdir(), prefix))
    homes.push(home)
    return home
  }
}
