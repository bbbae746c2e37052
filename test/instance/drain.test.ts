/**
 * Draining a runner with real runner processes: its instances move to the others one shard at
 * a time (each running on its new runner before the next stops), never two copies at once; the
 * drained runner takes nothing new while it lives; bad requests change nothing; undrain gives it
 * shards again.
 */
import { Effect, Hash, Stream } from "effect"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import type { DrainProgress } from "../../src/client/Drain.ts"
import { HostClient } from "../../src/client/HostClient.ts"
import type { InstanceSpec } from "../../src/instance/InstanceSpec.ts"
import { expectNoOverlap, type Life } from "../support/audit.ts"
import { useCluster } from "../support/cluster.ts"
import { fastTimings, root } from "../support/processes.ts"

const fixture = Path.join(root, "test/instance/fixtures/audited.mjs")
const shards = Number(fastTimings.SHARDHUB_SHARDS)
/** The shard of an instance id, as Effect's Sharding computes it. */
const shardOf = (id: string) => Math.abs(Hash.string(id) % shards) + 1

describe("drain", () => {
  const cluster = useCluster("drain", { runners: 3 })
  const host = <A, E>(f: (host: HostClient["Service"]) => Effect.Effect<A, E>) => cluster.run(Effect.flatMap(HostClient, f))

  const startAudited = (ids: ReadonlyArray<string>, auditFile: string) =>
    host((host) =>
      Effect.forEach(ids, (id) =>
        host.start({
          program: { _tag: "Command", command: process.execPath, args: [fixture, id] },
          env: { set: { AUDIT_FILE: auditFile } }
        } satisfies InstanceSpec, { id }), { concurrency: "unbounded" }))

  const settled = cluster.settled

  it("moves a runner's instances away one shard at a time, never two copies at once, and gives it nothing new", async () => {
    cluster.printOnFailure()
    const auditFile = Path.join(cluster.home, "audit-drain.log")
    const ids = Array.from({ length: 18 }, (_, i) => `drain-${i}`)
    await startAudited(ids, auditFile)
    const before = await settled(ids)
    // The runner with the most instances is drained.
    const counts = new Map<string, number>()
    for (const info of before) counts.set(info.runner!, (counts.get(info.runner!) ?? 0) + 1)
    const [drained] = [...counts].sort((a, b) => b[1] - a[1])[0]!
    const moving = before.filter((info) => info.runner === drained)
    expect(moving.length).toBeGreaterThan(1)

    const steps: Array<DrainProgress> = []
    const startedAt = Date.now()
    await host((host) =>
      host.drain(drained, { parallel: 1 }).pipe(
        Effect.flatMap(Stream.runForEach((step) => Effect.sync(() => steps.push(step))))
      ))
    const tookMs = Date.now() - startedAt
    console.log(`drain of ${moving.length} instances on ${new Set(moving.map((i) => shardOf(i.id))).size} shards: ${tookMs} ms; steps ${steps.map((s) => s.instances).join(" ")}`)
    // The progress ends empty, and went down as the instances moved.
    expect(steps.at(-1)).toMatchObject({ address: drained, instances: 0, shards: 0 })
    expect(steps.map((s) => s.instances)).toEqual([...steps.map((s) => s.instances)].sort((a, b) => b - a))

    const after = await settled(ids)
    for (const info of after) expect(info.runner).not.toBe(drained)
    const lives = expectNoOverlap(auditFile)

    // One shard at a time (parallel 1): the gap of a moved instance (its old copy's last beat to
    // its new copy's first) never overlaps the gap of an instance of another shard.
    const gaps = moving.map((info) => {
      const copies: Array<Life> = lives.get(info.id)!
      expect(copies.length, `${info.id}: copies ${JSON.stringify(copies)}`).toBeGreaterThanOrEqual(2)
      return { id: info.id, shard: shardOf(info.id), from: copies[0]!.last, to: copies[1]!.first }
    })
    console.log(`gaps (ms): ${gaps.map((g) => `${g.id}@${g.shard} ${g.from - startedAt}→${g.to - startedAt}`).join(", ")}`)
    for (const a of gaps) {
      for (const b of gaps) {
        if (a.shard === b.shard) continue
        const overlap = Math.min(a.to, b.to) - Math.max(a.from, b.from)
        // The next shard goes once the record says `running` on the new runner; the new copy's
        // first beat follows by its Node start-up, hence the slack.
        expect(overlap, `${a.id} (shard ${a.shard}) and ${b.id} (shard ${b.shard}) were both between runners`).toBeLessThan(300)
      }
    }

    // The drained runner is listed as such and takes nothing new.
    const rows = await host((host) => host.runners)
    expect(rows.find((r) => r.address === drained)).toMatchObject({ drained: true, healthy: false, shards: 0, instances: 0 })
    const fresh = Array.from({ length: 8 }, (_, i) => `fresh-${i}`)
    await startAudited(fresh, auditFile)
    for (const info of await settled(fresh)) expect(info.runner).not.toBe(drained)

    // A drain that would leave no runner is refused, and changes nothing.
    const others = rows.filter((r) => r.address !== drained).map((r) => r.address)
    await host((host) => host.drain(others[0]!, { parallel: 8 }).pipe(Effect.flatMap(Stream.runDrain)))
    const refused = await host((host) => Effect.flip(host.drain(others[1]!, { parallel: 1 })))
    expect(refused).toMatchObject({ reason: "LastRunner" })
    expect(refused.message).toContain("would leave no healthy runner")
    expect((await host((host) => host.runners)).find((r) => r.address === others[1])).toMatchObject({ drained: false, healthy: true })
    for (const info of await settled([...ids, ...fresh])) expect(info.runner).toBe(others[1])

    // Undrain: both take shards again, and every instance still runs once.
    await host((host) => Effect.all([host.undrain(drained), host.undrain(others[0]!)]))
    await cluster.waitForShards()
    await settled([...ids, ...fresh])
    expectNoOverlap(auditFile)
  }, 180_000)

  it("refuses an unknown or malformed address and an undrain of a runner that is not drained, with one clear line", async () => {
    const address = cluster.runners[0]!.address
    const unknown = await host((host) => Effect.flip(host.drain("127.0.0.1:1", { parallel: 1 })))
    expect(unknown).toMatchObject({ reason: "UnknownRunner" })
    expect(unknown.message).toMatch(/^no runner at 127\.0\.0\.1:1 \(runners: /)
    const malformed = await host((host) => Effect.flip(host.drain("'; DROP TABLE x; --", { parallel: 1 })))
    expect(malformed.message).toContain("is not a runner address")
    const notDrained = await host((host) => Effect.flip(host.undrain(address)))
    expect(notDrained).toMatchObject({ reason: "NotDrained", message: `${address} is not drained` })
    const rows = await host((host) => host.runners)
    expect(rows.every((r) => !r.drained)).toBe(true)
  })
})
