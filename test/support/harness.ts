/**
 * vitest's side of the process helpers: runners and client-only participants that are
 * SIGKILLed by pid after each test, with their output printed when the test failed.
 */
import { afterEach, onTestFailed } from "vitest"
import { fastTimings, type Spawned, spawnNode, startRunnerProcess } from "./processes.ts"

/**
 * The processes of one test file. Registers an `afterEach` that SIGKILLs every process spawned
 * during the test, and prints their output when the test failed.
 */
export const useProcesses = () => {
  const spawned: Array<Spawned> = []

  afterEach(async () => {
    const all = spawned.splice(0)
    await Promise.all(all.map((p) => p.kill("SIGKILL")))
  })

  const track = <P extends Spawned>(process: P): P => {
    spawned.push(process)
    onTestFailed(() => {
      console.error(`----- output of ${process.name} (pid ${process.pid}) -----\n${process.output()}`)
    })
    return process
  }

  return {
    spawn: (name: string, script: string, options?: Parameters<typeof spawnNode>[2]) =>
      track(spawnNode(name, script, options)),

    /** A runner on a free port, on `databaseUrl`; resolves once it serves. */
    runner: async (name: string, databaseUrl: string, env: Readonly<Record<string, string>> = {}) =>
      track(await startRunnerProcess(name, { DATABASE_URL: databaseUrl, ...fastTimings, ...env })),

    /** A client-only participant on `databaseUrl`, driven through its stdin. */
    client: async (name: string, databaseUrl: string) => {
      const process = track(spawnNode(name, "test/support/clientProcess.ts", {
        env: { DATABASE_URL: databaseUrl, ...fastTimings }
      }))
      await process.waitFor(/^ready/m, 60_000)
      return new ClientProcess(process)
    }
  }
}

/**
 * Talks to a client-only process: one JSON request per line on its stdin, one JSON answer per
 * line on its stdout (see `clientProcess.ts`).
 */
export class ClientProcess {
  private next = 0
  private readonly pending = new Map<number, (answer: ClientAnswer) => void>()
  readonly process: Spawned

  constructor(process: Spawned) {
    this.process = process
    let buffer = ""
    process.child.stdout!.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("utf8")
      let newline: number
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline)
        buffer = buffer.slice(newline + 1)
        if (!line.startsWith("{")) continue
        const answer = JSON.parse(line) as ClientAnswer & { readonly id: number }
        this.pending.get(answer.id)?.(answer)
        this.pending.delete(answer.id)
      }
    })
  }

  /** Asks probe `entityId` where it runs, giving up after `timeoutMs`. */
  whoami(entityId: string, timeoutMs = 5_000): Promise<ClientAnswer> {
    const id = this.next++
    return new Promise((resolve) => {
      this.pending.set(id, resolve)
      this.process.child.stdin!.write(JSON.stringify({ id, op: "whoami", entityId, timeoutMs }) + "\n")
    })
  }
}

export type ClientAnswer =
  | { readonly ok: true; readonly runner: string; readonly pid: number; readonly activation: number }
  | { readonly ok: false; readonly error: string }
