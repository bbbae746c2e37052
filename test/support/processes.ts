/**
 * Real OS processes for tests and benchmarks: spawn Node scripts, watch their output, wait for
 * conditions, kill them. No test framework here (see `harness.ts` for vitest's side).
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { runnerNodeOptions } from "../../src/base/heap.js"

export const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../..")

/**
 * Cluster timings for tests: failover in about a second and a half, with a lower bound that
 * keeps a loaded two-core machine from declaring live runners dead.
 */
export const fastTimings: Readonly<Record<string, string>> = {
  // A refresh slower than the refresh interval makes a runner drop its shards (and stop their
  // instances): leave room for a loaded CI machine.
  SHARDHUB_SHARD_LOCK_EXPIRATION: "3 seconds",
  SHARDHUB_SHARD_LOCK_REFRESH: "1 second",
  SHARDHUB_ASSIGNMENT_POLL: "150 millis",
  SHARDHUB_MESSAGE_POLL: "300 millis",
  SHARDHUB_HEALTH_CHECK: "2 seconds",
  SHARDHUB_SHARDS: "32",
  // A rotated cluster key is used after three refreshes.
  SHARDHUB_KEY_REFRESH: "500 millis"
}

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/**
 * A running child process and what it printed.
 */
export interface Spawned {
  readonly name: string
  readonly pid: number
  readonly child: ChildProcess.ChildProcess
  /** Everything it printed so far, stdout and stderr interleaved. */
  readonly output: () => string
  /** Resolves with the first match of `pattern` in its output (past or future). */
  readonly waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>
  readonly exited: Promise<Exit>
  /** Sends `signal` (default SIGKILL) and resolves when it has exited. */
  readonly kill: (signal?: NodeJS.Signals) => Promise<Exit>
}

/**
 * Starts `node <script> ...args` with Node 24 (the test's own `process.execPath`).
 */
export const spawnNode = (name: string, script: string, options: {
  readonly args?: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  /** Runs it through this command first, e.g. `["setpriv", "--reuid=nobody", ...]`. */
  readonly wrapper?: ReadonlyArray<string>
  /** Options of Node itself, before the script (a runner's: `runnerNodeOptions`). */
  readonly nodeArgs?: ReadonlyArray<string>
} = {}): Spawned => {
  const command = [...(options.wrapper ?? []), process.execPath, ...(options.nodeArgs ?? []), Path.resolve(root, script), ...(options.args ?? [])]
  const child = ChildProcess.spawn(command[0]!, command.slice(1), {
    cwd: root,
    env: { ...process.env, ...options.env },
    stdio: ["pipe", "pipe", "pipe"]
  })
  let output = ""
  const listeners = new Set<() => void>()
  const append = (chunk: Buffer) => {
    output += chunk.toString("utf8")
    for (const listener of listeners) listener()
  }
  child.stdout!.on("data", append)
  child.stderr!.on("data", append)
  const exited = new Promise<Exit>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })))
  let hasExited = false
  void exited.then(() => {
    hasExited = true
    for (const listener of listeners) listener()
  })

  const waitFor = (pattern: RegExp, timeoutMs = 30_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = output.match(pattern)
        if (match) return done(() => resolve(match))
        if (hasExited) return done(() => reject(new Error(`${name} exited before printing ${pattern}:\n${output}`)))
      }
      const timer = setTimeout(
        () => done(() => reject(new Error(`${name} did not print ${pattern} within ${timeoutMs} ms:\n${output}`))),
        timeoutMs
      )
      const done = (f: () => void) => {
        clearTimeout(timer)
        listeners.delete(check)
        f()
      }
      listeners.add(check)
      check()
    })

  const kill = (signal: NodeJS.Signals = "SIGKILL") => {
    if (!hasExited) child.kill(signal)
    return exited
  }
  if (child.pid === undefined) throw new Error(`could not spawn ${name}`)
  return { name, pid: child.pid, child, output: () => output, waitFor, exited, kill }
}

/**
 * Ports for listeners a test starts by number (runners must know their own port). They come
 * from below the kernel's ephemeral range (32768–60999 here), so an outgoing connection (a
 * Postgres session, a dial) cannot take one between the check and the listen, and each vitest
 * worker draws from its own block, so two test files never get the same one.
 */
const portBlock = 2000
const portBase = 20_000 + ((Number(process.env.VITEST_POOL_ID ?? "1") - 1) % 6) * portBlock
let nextPort = Math.floor(Math.random() * portBlock)

const canListen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = Net.createServer()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

/** The first of `count` consecutive ports of 127.0.0.1 that are free now (by default one). */
export const freePorts = async (count = 1): Promise<number> => {
  for (let attempt = 0; attempt < portBlock; attempt++) {
    const first = portBase + (nextPort % (portBlock - count))
    nextPort += count
    const free = await Promise.all(Array.from({ length: count }, (_, i) => canListen(first + i)))
    if (free.every(Boolean)) return first
  }
  throw new Error(`no ${count} consecutive free ports from ${portBase}`)
}

/** A port of 127.0.0.1 that is free now. */
export const freePort = () => freePorts(1)

/**
 * A runner process on a free port of 127.0.0.1 (`node <script>`, default `src/main.ts`), with
 * `env` on top of this process's environment; resolves once it printed `ready`.
 */
export const startRunnerProcess = async (
  name: string,
  env: Readonly<Record<string, string>>,
  options: { readonly script?: string } = {}
): Promise<Spawned & { readonly address: string }> => {
  const port = await freePort()
  const runner = spawnNode(name, options.script ?? "src/main.ts", {
    nodeArgs: runnerNodeOptions,
    env: { SHARDHUB_RUNNER_HOST: "127.0.0.1", SHARDHUB_RUNNER_PORT: String(port), ...env }
  })
  try {
    await runner.waitFor(/^ready/m, 60_000)
  } catch (error) {
    await runner.kill("SIGKILL")
    throw error
  }
  return Object.assign(runner, { address: `127.0.0.1:${port}` })
}

/**
 * Polls `attempt` until it returns a value other than `undefined` (or stops throwing), failing
 * with the last error after `timeoutMs`.
 */
export const eventually = async <A>(
  attempt: () => Promise<A | undefined>,
  options: { readonly timeoutMs?: number; readonly intervalMs?: number; readonly what?: string } = {}
): Promise<A> => {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000)
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await attempt()
      if (value !== undefined) return value
    } catch (error) {
      last = error
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50))
  }
  throw new Error(`timed out waiting for ${options.what ?? "a condition"}${last ? `: ${String(last)}` : ""}`)
}

export { isAlive } from "../../src/store/EmbeddedPostgres.ts"

export { processState } from "../../src/process/ProcStats.ts"

/** The parent of `pid` (from `/proc/<pid>/stat`). */
export const parentOf = (pid: number): number => {
  const stat = Fs.readFileSync(`/proc/${pid}/stat`, "latin1")
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
}

/**
 * The Node sequence runners waiting as spares on this machine (`--spare` in their argv), each
 * with the process that started its spawner: its manager (a runner).
 */
export const spareProcesses = (): Array<{ readonly pid: number; readonly manager: number }> => {
  const found: Array<{ readonly pid: number; readonly manager: number }> = []
  for (const entry of Fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (!Fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").includes("--spare")) continue
      found.push({ pid: Number(entry), manager: parentOf(parentOf(Number(entry))) })
    } catch {
      // gone
    }
  }
  return found
}
