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

  it("brings up an instance the registry says should run though no entity holds it (a start whose record landed after its shard moved), with nothing in the message store", async () => {
    cluster.printOnFailure()
    while (cluster.runners.filter((r) => r.child.exitCode === null && r.child.signalCode === null).length < 3) {
      await cluster.startRunner(`runner-${cluster.runners.length}`)
    }
    const id = "behind-the-back"
    const auditFile = Path.join(cluster.home, "audit-behind-the-back.log")
    const spec: InstanceSpec = {
      program: { _tag: "Command", command: process.execPath, args: [fixture, id] },
      env: { set: { AUDIT_FILE: auditFile } }
    }
    // Written behind the cluster's back: no entity is active for it, no message names it.
    await query(cluster.databaseUrl, (sql) =>
      sql`INSERT INTO shardhub_instances (id, spec, start_key, desired, status, epoch)
        VALUES (${id}, ${JSON.stringify(spec)}::jsonb, 'written-by-the-test', 'running', 'starting', 1)`)
    const [info] = await settled([id])
    expect(info).toMatchObject({ status: "running", desired: "running" })
    expect(info!.epoch).toBeGreaterThan(1)
    expect(cluster.runners.map((r) => r.address)).toContain(info!.runner)
    // Residency is not persisted: the running instance has no message in the store.
    const messages = await query<{ tag: string }>(cluster.databaseUrl, (sql) =>
      sql`SELECT tag FROM cluster_messages WHERE entity_id = ${id}`)
    expect(messages).toEqual([])
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
