/**
 * Fault paths of an instance that must never wedge: a restart whose spawn fails (its working
 * directory was removed) backs off under its policy, a stop answers with the reason on record,
 * and the runner still stops on SIGTERM.
 */
import { Effect, Stream } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import { useCluster } from "../support/cluster.ts"
import { eventually } from "../support/processes.ts"
import { query } from "../support/sql.ts"
import * as Pruning from "../../src/store/Pruning.ts"

/**
 * Makes the store refuse every update of an instance record for which `condition` (SQL over
 * `NEW`) holds, with `message`, through the trigger `name` (dropped with `DROP TRIGGER name`).
 */
const refuseUpdates = async (url: string, name: string, condition: string, message: string) => {
  await query(url, (sql) =>
    sql.unsafe(`CREATE FUNCTION ${name}() RETURNS trigger AS $$
    BEGIN
      IF ${condition} THEN RAISE EXCEPTION '${message}'; END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql`))
  await query(url, (sql) => sql.unsafe(`CREATE TRIGGER ${name} BEFORE UPDATE ON shardhub_instances FOR EACH ROW EXECUTE FUNCTION ${name}()`))
}

describe("instance fault paths", () => {
  const cluster = useCluster("faults", { runners: 1 })

  it("an end reported while the store refuses writes is stored once it takes them again (reports are retried)", async () => {
    cluster.printOnFailure()
    const id = `blip-${Date.now()}`
    // The store refuses the first three writes of this instance's end (a blip), then takes them.
    await query(cluster.databaseUrl, (sql) => sql.unsafe("CREATE SEQUENCE blips"))
    await refuseUpdates(cluster.databaseUrl, "blip", `NEW.id = '${id}' AND NEW.status = 'stopped' AND nextval('blips') <= 3`, "the store blinked")
    try {
      await cluster.run(Effect.flatMap(HostClient, (host) =>
        host.start({ program: { _tag: "Command", command: "sh", args: ["-c", "sleep 0.2"], cwd: "/" } }, { id })))
      const ended = await eventually(async () => {
        const info = await cluster.run(Effect.flatMap(HostClient, (host) => host.get(id)))
        return info.status === "stopped" ? info : undefined
      }, { what: "the end of the instance in the store" })
      expect(ended).toMatchObject({ status: "stopped", desired: "stopped", exitCode: 0 })
      const [{ n }] = await query<{ n: string }>(cluster.databaseUrl, (sql) => sql`SELECT last_value AS n FROM blips`)
      expect(Number(n)).toBeGreaterThan(3)
    } finally {
      await query(cluster.databaseUrl, (sql) => sql.unsafe("DROP TRIGGER blip ON shardhub_instances"))
    }
  })

  it("a start that gets no answer in time tells the truth: it runs, or it was called off and never runs, or its id is named", async () => {
    cluster.printOnFailure()
    // Deadlines from 1 ms up: some starts answer, some are called off before the runner saw them.
    const outcomes = await Promise.all(Array.from({ length: 24 }, (_, i) => {
      const id = `hurried-${Date.now()}-${i}`
      return cluster.run(Effect.flatMap(HostClient, (host) =>
        host.start({ program: { _tag: "Command", command: "sleep", args: ["600"], cwd: "/" } }, { id, timeoutMs: 1 + i * 4 }).pipe(
          Effect.map((info) => ({ id, outcome: "started" as const, info })),
          Effect.catchTag("StartUnconfirmed", (error) => Effect.succeed({ id, outcome: error.outcome, info: undefined }))
        )))
    }))
    expect(outcomes.some((o) => o.outcome === "cancelled")).toBe(true)
    // Give any start message still on its way time to arrive, then look at every record.
    await new Promise((resolve) => setTimeout(resolve, 2000))
    for (const { id, outcome } of outcomes) {
      const info = await cluster.run(Effect.flatMap(HostClient, (host) => host.get(id)))
      if (outcome === "started") expect({ id, status: info.status }).toEqual({ id, status: "running" })
      if (outcome === "cancelled") {
        expect(info).toMatchObject({ status: "stopped", desired: "stopped", reason: expect.stringMatching(/called off/) })
        expect(info.pid).toBeUndefined()
      }
    }
    await cluster.run(Effect.forEach(outcomes, ({ id }) =>
      Effect.flatMap(InstanceClient, (instances) => instances.kill(id, { removeImmediately: true }).pipe(Effect.ignore)), { discard: true }))
  })

  it("the store's bookkeeping is pruned: processed messages, their replies and ended activations", async () => {
    cluster.printOnFailure()
    const count = async (statement: string) => Number((await query<{ n: string }>(cluster.databaseUrl, (sql) => sql.unsafe(statement)))[0]!.n)
    // Persisted messages: the ticks of scheduled instances (every second, each run is `true`).
    const ids = await cluster.run(Effect.forEach(Array.from({ length: 5 }), () =>
      Effect.map(
        Effect.flatMap(HostClient, (host) => host.start({ program: { _tag: "Command", command: "true", cwd: "/" }, schedule: { cron: "* * * * * *" } })),
        (info) => info.id
      ), { concurrency: "unbounded" }))
    const processed = "SELECT count(*) AS n FROM cluster_messages WHERE processed"
    await eventually(async () => (await count(processed)) >= 10 || undefined, { what: "ten ticks delivered" })
    await cluster.run(Effect.forEach(ids, (id) => Effect.flatMap(InstanceClient, (instances) => instances.stop(id, { timeoutMs: 5000 })), { discard: true }))
    // The tick each one had asked for before it was stopped is still delivered (and dropped).
    await eventually(async () => (await count("SELECT count(*) AS n FROM cluster_messages WHERE NOT processed AND tag = 'Tick'")) === 0 || undefined, {
      what: "the last ticks of the stopped schedules delivered"
    })
    const unprocessed = await count("SELECT count(*) AS n FROM cluster_messages WHERE NOT processed")
    const pruned = await cluster.run(Pruning.prune(Date.now()))
    expect(pruned.messages).toBeGreaterThanOrEqual(10)
    expect(await count(processed)).toBe(0)
    expect(await count("SELECT count(*) AS n FROM cluster_messages WHERE NOT processed")).toBe(unprocessed)
    expect(await count("SELECT count(*) AS n FROM cluster_replies r WHERE NOT EXISTS (SELECT 1 FROM cluster_messages m WHERE m.request_id = r.request_id)")).toBe(0)
    // Nothing the cluster still needs went: a start after pruning works.
    const after = await cluster.run(Effect.flatMap(HostClient, (host) => host.start({ program: { _tag: "Command", command: "sleep", args: ["60"], cwd: "/" } })))
    expect(after.status).toBe("running")
    await cluster.run(Effect.flatMap(InstanceClient, (instances) => instances.kill(after.id)))
  })

  it("a restart that cannot spawn (its directory is gone) does not wedge the instance or its runner", async () => {
    cluster.printOnFailure()
    const cwd = Fs.mkdtempSync(Path.join(cluster.home, "cwd-"))
    const info = await cluster.run(Effect.flatMap(HostClient, (host) =>
      host.start({
        program: { _tag: "Command", command: "sh", args: ["-c", "sleep 0.3; exit 1"], cwd },
        restart: { mode: "always", backoffMs: 50, backoffFactor: 1, maxRestarts: 1000 }
      })))
    Fs.rmSync(cwd, { recursive: true })
    // It keeps trying under its policy: the restarts go on counting.
    await eventually(async () => {
      const now = await cluster.run(Effect.flatMap(HostClient, (host) => host.get(info.id)))
      return now.restarts >= 3 || undefined
    }, { what: "three restarts after the working directory was removed" })

    const stopped = await cluster.run(Effect.flatMap(InstanceClient, (instances) => instances.stop(info.id, { timeoutMs: 2000 })))
    // Stopped, as asked; the record says why its last run failed.
    expect(stopped).toMatchObject({ status: "stopped", desired: "stopped" })
    expect(stopped.reason).toMatch(/^SpawnFailed: working directory .* does not exist/)

    // The runner answers SIGTERM (before the fix it waited on the wedged process for good).
    const runner = cluster.runners[0]!
    const exit = await Promise.race([
      runner.kill("SIGTERM"),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the runner ignored SIGTERM")), 60_000).unref())
    ])
    expect(exit.code === 0 || exit.signal === "SIGTERM" || exit.code === 130 || exit.code === 143).toBe(true)
  })
})

describe("instance logs after their process", () => {
  const cluster = useCluster("pastlogs", { runners: 1 })

  it("an ended instance's log outlives its process: it is read from its files after the runner restarted", async () => {
    cluster.printOnFailure()
    const info = await cluster.run(Effect.flatMap(HostClient, (host) =>
      host.start({ program: { _tag: "Command", command: "sh", args: ["-c", "echo one; echo two >&2"], cwd: "/" } })))
    await eventually(async () => {
      const now = await cluster.run(Effect.flatMap(HostClient, (host) => host.get(info.id)))
      return now.status === "stopped" || undefined
    }, { what: "the instance to end" })
    // The runner goes (its entities and processes with it) and a new one takes its state directory.
    await cluster.runners[0]!.kill("SIGTERM")
    await cluster.startRunner("runner-0")
    await cluster.waitForShards()
    const lines = await cluster.run(Effect.flatMap(InstanceClient, (instances) => Stream.runCollect(instances.logs(info.id))))
    expect(Array.from(lines).map((line) => [line.stream, line.text])).toEqual([["stdout", "one"], ["stderr", "two"]])
    const tail = await cluster.run(Effect.flatMap(InstanceClient, (instances) => Stream.runCollect(instances.logs(info.id, { tail: 1 }))))
    expect(Array.from(tail).map((line) => line.text)).toEqual(["two"])
  })
})

describe("a shard release", () => {
  const cluster = useCluster("release", { runners: 1 })

  it("does not wait for the store: a runner whose start cannot store `running` stops on SIGTERM, its process stopped gracefully, and the instance comes back once the store takes it", async () => {
    cluster.printOnFailure()
    const id = `unstored-${Date.now()}`
    const audit = Path.join(cluster.home, `${id}.audit`)
    // The store refuses to record this instance running (the start keeps retrying that report).
    await refuseUpdates(cluster.databaseUrl, "refuse_running", `NEW.id = '${id}' AND NEW.status = 'running'`, "the store refuses")
    // Each run notes its pid, and notes a graceful stop (SIGTERM) before it exits.
    const program = {
      _tag: "Command" as const,
      command: "sh",
      args: ["-c", `trap 'echo term >> "$0"; exit 0' TERM; echo "pid $$" >> "$0"; while :; do sleep 0.05; done`, audit],
      cwd: "/"
    }
    const start = cluster.run(Effect.flatMap(HostClient, (host) =>
      host.start({ program }, { id, timeoutMs: 120_000 }).pipe(
        Effect.map((info) => info.status),
        Effect.catchTag("StartUnconfirmed", (error) => Effect.succeed(error.outcome))
      )))
    const lines = () => Fs.existsSync(audit) ? Fs.readFileSync(audit, "utf8").trim().split("\n") : []
    await eventually(async () => lines().length === 1 || undefined, { what: "the process to run" })
    expect((await cluster.run(Effect.flatMap(HostClient, (host) => host.get(id)))).status).toBe("starting")

    // Its shard is released on SIGTERM while the start still waits for the store: the release
    // stops the process (gracefully) and the runner exits.
    await cluster.runners[0]!.kill("SIGTERM")
    expect(lines()).toEqual([expect.stringMatching(/^pid \d+$/), "term"])

    // Once the store takes the report, the next runner brings it back: one new run.
    await query(cluster.databaseUrl, (sql) => sql.unsafe("DROP TRIGGER refuse_running ON shardhub_instances"))
    await cluster.startRunner("runner-0")
    const running = await eventually(async () => {
      const info = await cluster.run(Effect.flatMap(HostClient, (host) => host.get(id)))
      return info.status === "running" ? info : undefined
    }, { what: "the instance back on the new runner" })
    expect(running).toMatchObject({ desired: "running", epoch: 2 })
    expect(lines()).toEqual([expect.stringMatching(/^pid \d+$/), "term", `pid ${running.pid}`])
    // The start never failed: it answered once running, or named its id (never "cancelled").
    expect(["running", "unconfirmed"]).toContain(await start)
    await cluster.run(Effect.flatMap(InstanceClient, (instances) => instances.kill(id, { removeImmediately: true })))
  })
})
