/**
 * A cluster for one test file: a fresh database, N runner processes, and this test process as
 * a client-only participant (`Client.layer`, run through a ManagedRuntime).
 */
import { ConfigProvider, Effect, Layer, ManagedRuntime, Schedule } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, beforeAll, onTestFailed } from "vitest"
import * as Client from "../../src/node/Client.ts"
import { HostClient } from "../../src/client/HostClient.ts"
import { freshDatabase } from "./database.ts"
import { eventually, fastTimings, type Spawned, spawnNode, startRunnerProcess } from "./processes.ts"

export interface RunnerProcess extends Spawned {
  readonly address: string
}

/** The environment of a participant on `databaseUrl` with the test timings. */
export const clusterEnv = (databaseUrl: string, home: string): Record<string, string> => ({
  DATABASE_URL: databaseUrl,
  SHARDHUB_HOME: home,
  ...fastTimings
})

/**
 * Starts `runners` runners before the file's tests and stops everything after them. `runner(i)`
 * and `start()` let a test kill and add runners.
 */
export const useCluster = (label: string, options: {
  readonly runners: number
  /** The runner program (default `src/main.ts`). */
  readonly script?: string
  /** More environment for the runners. */
  readonly env?: Readonly<Record<string, string>>
}) => {
  const state = {
    databaseUrl: "",
    home: "",
    runners: [] as Array<RunnerProcess>,
    runtime: undefined as unknown as ManagedRuntime.ManagedRuntime<Layer.Success<ReturnType<typeof Client.layerFromEnv>>, unknown>
  }
  const all: Array<Spawned> = []

  const startRunner = async (name: string, env: Readonly<Record<string, string>> = {}): Promise<RunnerProcess> => {
    const runner = await startRunnerProcess(name, {
      ...clusterEnv(state.databaseUrl, state.home),
      SHARDHUB_RUNNER_STATE_DIR: Path.join(state.home, name),
      ...options.env,
      ...env
    }, options.script === undefined ? {} : { script: options.script })
    all.push(runner)
    state.runners.push(runner)
    return runner
  }

  beforeAll(async () => {
    state.databaseUrl = await freshDatabase(label)
    state.home = Fs.mkdtempSync(Path.join(Os.tmpdir(), `shardhub-${label}-`))
    await Promise.all(Array.from({ length: options.runners }, (_, i) => startRunner(`runner-${i}`)))
    state.runtime = ManagedRuntime.make(
      Client.layerFromEnv({ applicationName: "shardhub-test-client" }).pipe(
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: clusterEnv(state.databaseUrl, state.home) })))
      )
    )
    await waitForShards()
  })

  /**
   * Waits until every live runner holds shards: right after runners join, the first may hold
   * them all for a moment.
   */
  const waitForShards = () =>
    state.runtime.runPromise(Effect.gen(function*() {
      const host = yield* HostClient
      const live = state.runners.filter((r) => r.child.exitCode === null && r.child.signalCode === null)
      yield* host.runners.pipe(
        Effect.repeat({
          until: (rows) => live.every((r) => rows.some((row) => row.address === r.address && row.shards > 0)),
          schedule: Schedule.spaced("100 millis")
        }),
        Effect.timeout("60 seconds")
      )
    }))

  afterAll(async () => {
    await state.runtime?.dispose()
    await Promise.all(all.map((p) => p.kill("SIGKILL")))
    Fs.rmSync(state.home, { recursive: true, force: true })
  })

  return {
    get databaseUrl() {
      return state.databaseUrl
    },
    get home() {
      return state.home
    },
    get runners(): ReadonlyArray<RunnerProcess> {
      return state.runners
    },
    run: <A, E>(effect: import("effect").Effect.Effect<A, E, Layer.Success<ReturnType<typeof Client.layerFromEnv>>>) =>
      state.runtime.runPromise(effect),
    startRunner,
    waitForShards,
    /**
     * Waits until every instance of `ids` runs and none moved for a second: right after runners
     * join or leave, shards (and the instances with them) still move to their final owners.
     */
    settled: async (ids: ReadonlyArray<string>) => {
      let previous = ""
      let since = Date.now()
      return eventually(async () => {
        const infos = await state.runtime.runPromise(Effect.flatMap(HostClient, (host) => Effect.forEach(ids, (id) => host.get(id))))
        const placement = JSON.stringify(infos.map((info) => [info.status, info.runner, info.epoch, info.pid]))
        if (placement !== previous || infos.some((info) => info.status !== "running")) {
          previous = placement
          since = Date.now()
          return undefined
        }
        return Date.now() - since >= 1000 ? infos : undefined
      }, { timeoutMs: 30_000, intervalMs: 100, what: "a stable placement" })
    },
    /** Runs a Node script as another participant of the cluster. */
    spawn: (name: string, script: string, options: {
      readonly args?: ReadonlyArray<string>
      readonly env?: Readonly<Record<string, string>>
    } = {}) => {
      const spawned = spawnNode(name, script, {
        args: options.args ?? [],
        env: { ...clusterEnv(state.databaseUrl, state.home), ...options.env }
      })
      all.push(spawned)
      return spawned
    },
    /**
     * Starts the HTTP gateway (`shardhub gateway`) on a free port as another participant;
     * resolves with its base URL (`http://127.0.0.1:<port>`).
     */
    gateway: async (name: string, env: Readonly<Record<string, string>> = {}) => {
      const spawned = spawnNode(name, "src/cli/main.ts", {
        args: ["gateway", "--port", "0"],
        env: { ...clusterEnv(state.databaseUrl, state.home), ...env }
      })
      all.push(spawned)
      const [, url] = await spawned.waitFor(/gateway\s+(http:\/\/[^/\s]+)/, 60_000)
      return { process: spawned, url: url! }
    },
    /** On failure: every process's output, and the runners as the store sees them. */
    printOnFailure: () =>
      onTestFailed(async () => {
        for (const p of all) console.error(`----- output of ${p.name} (pid ${p.pid}) -----\n${p.output()}`)
        const rows = await state.runtime.runPromise(
          Effect.flatMap(HostClient, (host) => host.runners).pipe(Effect.timeout("5 seconds"), Effect.option)
        )
        console.error(`----- runners in the store -----\n${JSON.stringify(rows, null, 1)}`)
      })
  }
}
