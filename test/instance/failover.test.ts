/**
 * Ownership and failover with real runner processes: when a runner is SIGKILLed its running
 * instances run again on the others, and when a runner stops gracefully it hands them over.
 * Every copy of an instance appends heartbeats (`name pid time`) to an audit file; the
 * lifetimes of the copies of one instance must never overlap.
 */
import { Effect } from "effect"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import type { InstanceInfo, InstanceSpec } from "../../src/instance/InstanceSpec.ts"
import { type RunnerProcess, useCluster } from "../support/cluster.ts"
import { eventually, root } from "../support/processes.ts"
import { query } from "../support/sql.ts"
import { expectNoOverlap } from "../support/audit.ts"

const fixture = Path.join(root, "test/instance/fixtures/audited.mjs")

describe("failover", () => {
  const cluster = useCluster("failover", { runners: 3 })

  const startAudited = (count: number, prefix: string, auditFile: string) =>
    cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const spec = (name: string): InstanceSpec => ({
        program: { _tag: "Command", command: process.execPath, args: [fixture, name] },
        env: { set: { AUDIT_FILE: auditFile } }
      })
      return yield* Effect.forEach(
        Array.from({ length: count }, (_, i) => `${prefix}-${i}`),
        (id) => host.start(spec(id), { id }),
        { concurrency: "unbounded" }
      )
    }))

  /** Waits until every instance of `ids` runs on a runner other than `gone`. */
  const movedAway = (ids: ReadonlyArray<string>, gone: RunnerProcess, timeoutMs: number) =>
    eventually(async () => {
      const infos = await cluster.run(Effect.flatMap(HostClient, (host) => Effect.forEach(ids, (id) => host.get(id))))
      return infos.every((info) => info.status === "running" && info.runner !== gone.address) ? infos : undefined
    }, { timeoutMs, what: `instances of ${gone.address} running elsewhere` })

  const settled = cluster.settled

  const victimOf = (infos: ReadonlyArray<InstanceInfo>) => {
    const counts = new Map<string, number>()
    for (const info of infos) counts.set(info.runner!, (counts.get(info.runner!) ?? 0) + 1)
    const [address] = [...counts].sort((a, b) => b[1] - a[1])[0]!
    return cluster.runners.find((r) => r.address === address && r.child.exitCode === null && r.child.signalCode === null)!
  }

  it.each(["SIGKILL", "SIGTERM"] as const)("brings the instances of a runner stopped by %s back on the others, never two at once", async (signal) => {
    cluster.printOnFailure()
    // Keep three runners: replace the one the previous case stopped.
    while (cluster.runners.filter((r) => r.child.exitCode === null && r.child.signalCode === null).length < 3) {
      await cluster.startRunner(`runner-${cluster.runners.length}`)
    }
    const auditFile = Path.join(cluster.home, `audit-${signal}.log`)
    const started = await startAudited(12, signal.toLowerCase(), auditFile)
    const infos = await settled(started.map((info) => info.id))
    const before = new Map(infos.map((info) => [info.id, info]))
    const victim = victimOf(infos)
    const moving = infos.filter((info) => info.runner === victim.address).map((info) => info.id)
    expect(moving.length).toBeGreaterThan(0)

    const stoppedAt = Date.now()
    const exit = await victim.kill(signal)
    // A graceful stop ends the runner by itself (runMain exits 130 after an interrupt), not by the signal.
    if (signal === "SIGTERM") expect(exit.signal).toBeNull()
    const moved = await movedAway(moving, victim, 20_000)
    const tookMs = Date.now() - stoppedAt
    console.log(`${signal}: ${moving.length} instances running elsewhere after ${tookMs} ms`)

    // Each moved instance was claimed and started again (shards can also move between the
    // survivors when membership changes, so an instance may have moved more than once).
    for (const info of moved) {
      const was = JSON.stringify(before.get(info.id)) + " → " + JSON.stringify(info)
      expect(info.epoch, was).toBeGreaterThan(before.get(info.id)!.epoch)
      expect(info.restarts, was).toBeGreaterThan(before.get(info.id)!.restarts)
      expect(info.desired).toBe("running")
    }
    // Let the new copies beat a while, then check the whole history: never two copies at once,
    // never more copies than starts (a copy stopped before its first line ran leaves no beat),
    // and exactly one alive now — the one the registry names.
    // (Losing a runner can move shards between the survivors too: wait until placement settled.)
    const now = await settled(infos.map((info) => info.id))
    const lives = expectNoOverlap(auditFile)
    const at = Date.now()
    for (const info of now) {
      expect(info.status).toBe("running")
      expect(lives.get(info.id)!.length).toBeLessThanOrEqual(info.restarts + 1)
      const alive = lives.get(info.id)!.filter((life) => at - life.last < 250)
      expect(alive.map((life) => life.pid)).toEqual([info.pid])
    }
  })

  it("fails over an instance whose keep-alive was read again (as after 10 minutes of residency): the re-read does not end it", async () => {
    cluster.printOnFailure()
    while (cluster.runners.filter((r) => r.child.exitCode === null && r.child.signalCode === null).length < 3) {
      await cluster.startRunner(`runner-${cluster.runners.length}`)
    }
    const [started] = await startAudited(1, "resident", Path.join(cluster.home, "audit-resident.log"))
    const [info] = await settled([started!.id])
    // Effect's storage reads an unprocessed message again once its last read is 10 minutes old.
    await query(cluster.databaseUrl, (sql) =>
      sql`UPDATE cluster_messages SET last_read = NOW() - INTERVAL '11 minutes'
        WHERE entity_id = ${info!.id} AND tag = 'Cluster/Entity/keepAlive' AND processed = false`)
    await eventually(async () => {
      const rows = await query<{ fresh: boolean; processed: boolean }>(cluster.databaseUrl, (sql) =>
        sql`SELECT last_read > NOW() - INTERVAL '1 minute' AS fresh, processed FROM cluster_messages
          WHERE entity_id = ${info!.id} AND tag = 'Cluster/Entity/keepAlive'`)
      return rows.some((row) => row.fresh || row.processed) ? rows : undefined
    }, { timeoutMs: 20_000, what: "the keep-alive read again" })
    const owner = cluster.runners.find((r) => r.address === info!.runner)!
    await owner.kill("SIGKILL")
    const [moved] = await movedAway([info!.id], owner, 30_000)
    expect(moved!.epoch).toBeGreaterThan(info!.epoch)
  })

  // Last: it stops every runner. PM2 needs `save` and `resurrect` for this; shardhub nothing.
  it("brings every instance that should run back after the whole cluster stopped and started again; stopped ones stay stopped", async () => {
    cluster.printOnFailure()
    const auditFile = Path.join(cluster.home, "audit-cluster-restart.log")
    const started = await startAudited(6, "restart", auditFile)
    const ids = started.map((info) => info.id)
    const before = await settled(ids)
    await cluster.run(Effect.flatMap(InstanceClient, (instances) => instances.stop(ids[0]!)))
    const live = cluster.runners.filter((r) => r.child.exitCode === null && r.child.signalCode === null)
    await Promise.all(live.map((runner) => runner.kill("SIGTERM")))
    await cluster.startRunner("runner-after-a")
    await cluster.startRunner("runner-after-b")
    const after = await settled(ids.slice(1))
    for (const info of after) {
      const was = before.find((b) => b.id === info.id)!
      expect(info).toMatchObject({ status: "running", desired: "running" })
      expect(info.pid).not.toBe(was.pid)
      expect(["runner-after-a", "runner-after-b"].map((name) => cluster.runners.find((r) => r.name === name)!.address)).toContain(info.runner)
    }
    expect(await cluster.run(Effect.flatMap(HostClient, (host) => host.get(ids[0]!)))).toMatchObject({ status: "stopped", desired: "stopped" })
    expectNoOverlap(auditFile)
  })
})
