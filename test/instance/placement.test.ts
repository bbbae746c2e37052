/**
 * Placement with real runner processes carrying labels: an instance that requires labels runs
 * only on a runner that has them, before and after its runner dies; copies spread over a
 * label's values; a requirement no runner meets is `pending` with the reason and starts when
 * such a runner joins; a pending instance stops and is removed at once; bad labels are refused.
 */
import { Effect } from "effect"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import type { InstanceInfo, InstanceSpec } from "../../src/instance/InstanceSpec.ts"
import { meets } from "../../src/base/Labels.ts"
import { expectNoOverlap } from "../support/audit.ts"
import { type RunnerProcess, useCluster } from "../support/cluster.ts"
import { eventually, root, spawnNode } from "../support/processes.ts"
import { clusterEnv } from "../support/cluster.ts"

const fixture = Path.join(root, "test/instance/fixtures/audited.mjs")

describe("placement", () => {
  const cluster = useCluster("placement", { runners: 0 })
  const host = <A, E>(f: (host: HostClient["Service"]) => Effect.Effect<A, E>) => cluster.run(Effect.flatMap(HostClient, f))
  const instances = <A, E>(f: (instances: InstanceClient["Service"]) => Effect.Effect<A, E>) => cluster.run(Effect.flatMap(InstanceClient, f))
  const labelsOf = new Map<string, Record<string, string>>()
  const runner = async (name: string, labels: Record<string, string>) => {
    const started = await cluster.startRunner(name, { SHARDHUB_RUNNER_LABELS: Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(",") })
    labelsOf.set(started.address, labels)
    return started
  }
  const audited = (id: string, auditFile: string, on?: Record<string, string>): InstanceSpec => ({
    program: { _tag: "Command", command: process.execPath, args: [fixture, id] },
    env: { set: { AUDIT_FILE: auditFile } },
    ...(on === undefined ? {} : { placement: { on } })
  })
  const running = (ids: ReadonlyArray<string>, ok: (info: InstanceInfo) => boolean = () => true) =>
    eventually(async () => {
      const infos = await host((host) => Effect.forEach(ids, (id) => host.get(id)))
      return infos.every((info) => info.status === "running" && ok(info)) ? infos : undefined
    }, { timeoutMs: 30_000, what: `${ids.join(", ")} running` })
  const expectPlaced = (infos: ReadonlyArray<InstanceInfo>) => {
    for (const info of infos) {
      const labels = labelsOf.get(info.runner!)!
      expect(meets(labels, info.spec.placement?.on ?? {}), `${info.id} (${JSON.stringify(info.spec.placement)}) on ${info.runner} ${JSON.stringify(labels)}`).toBe(true)
    }
  }

  it("runs placed instances only where their labels are, before and after a failover; spreads copies over a label", async () => {
    cluster.printOnFailure()
    const [gpu, zoneA, zoneB] = [await runner("gpu-a", { gpu: "true", zone: "a" }), await runner("plain-a", { zone: "a" }), await runner("plain-b", { zone: "b" })]
    await cluster.waitForShards()
    const rows = await host((host) => host.runners)
    expect(rows.find((r) => r.address === gpu.address)!.labels).toEqual({ gpu: "true", zone: "a" })

    const auditFile = Path.join(cluster.home, "audit-placement.log")
    const onGpu = Array.from({ length: 4 }, (_, i) => `gpu-${i}`)
    const inZoneA = Array.from({ length: 6 }, (_, i) => `zone-a-${i}`)
    const anywhere = Array.from({ length: 6 }, (_, i) => `any-${i}`)
    await host((host) => Effect.forEach([
      ...onGpu.map((id) => audited(id, auditFile, { gpu: "true" })),
      ...inZoneA.map((id) => audited(id, auditFile, { zone: "a" })),
      ...anywhere.map((id) => audited(id, auditFile))
    ], (spec) => host.start(spec, { id: spec.program._tag === "Command" ? spec.program.args![1]! : "" }), { concurrency: 8 }))
    const before = await running([...onGpu, ...inZoneA, ...anywhere])
    expectPlaced(before)
    for (const info of before.filter((i) => onGpu.includes(i.id))) expect(info.runner).toBe(gpu.address)
    for (const info of before.filter((i) => inZoneA.includes(i.id))) expect([gpu.address, zoneA.address]).toContain(info.runner)

    // The zone=a runner without the GPU dies: its zone=a instances go to the other zone=a runner, never to zone b.
    const moving = before.filter((info) => info.runner === zoneA.address && inZoneA.includes(info.id)).map((info) => info.id)
    await zoneA.kill("SIGKILL")
    const after = await running([...onGpu, ...inZoneA, ...anywhere], (info) => info.runner !== zoneA.address)
    expectPlaced(after)
    for (const id of moving) expect(after.find((info) => info.id === id)!.runner).toBe(gpu.address)
    expect(after.filter((info) => info.runner === zoneB.address).every((info) => anywhere.includes(info.id))).toBe(true)
    expectNoOverlap(auditFile)

    // Spread: copies take the zone values in turn.
    const spread = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      return yield* Effect.forEach(["a", "b", "a", "b"], (zone, i) =>
        host.start({ ...audited(`spread-${i}`, auditFile), placement: { on: { zone } } }, { id: `spread-${i}` }))
    }))
    const spreadNow = await running(spread.map((info) => info.id))
    expectPlaced(spreadNow)
    expect(spreadNow.filter((info) => info.runner === zoneB.address)).toHaveLength(2)
    await instances((instances) => Effect.forEach([...onGpu, ...inZoneA, ...anywhere, ...spread.map((i) => i.id)], (id) => instances.kill(id, { removeImmediately: true })))
  }, 120_000)

  it("keeps an instance no runner can take pending with the reason, and starts it when such a runner joins", async () => {
    cluster.printOnFailure()
    const waiting = await host((host) => host.start(audited("tpu-job", Path.join(cluster.home, "audit-pending.log"), { tpu: "v5" }), { id: "tpu-job" }))
    expect(waiting).toMatchObject({ id: "tpu-job", status: "pending", desired: "running", reason: "no runner has tpu=v5" })
    expect((await host((host) => host.list({ statuses: ["pending"] }))).map((info) => info.id)).toEqual(["tpu-job"])
    // One that is stopped and one that is removed while pending: answered at once, never started.
    await host((host) => host.start(audited("tpu-stopped", Path.join(cluster.home, "audit-pending.log"), { tpu: "v5" }), { id: "tpu-stopped" }))
    await host((host) => host.start(audited("tpu-removed", Path.join(cluster.home, "audit-pending.log"), { tpu: "v5" }), { id: "tpu-removed" }))
    expect(await instances((instances) => instances.stop("tpu-stopped"))).toMatchObject({ status: "stopped", desired: "stopped", reason: "stopped while pending" })
    await instances((instances) => instances.kill("tpu-removed", { removeImmediately: true }))
    expect(await host((host) => Effect.flip(host.get("tpu-removed")))).toMatchObject({ _tag: "InstanceNotFound" })

    const tpu: RunnerProcess = await runner("tpu", { tpu: "v5" })
    const [started] = await running(["tpu-job"])
    expect(started!.runner).toBe(tpu.address)
    expect(started!.reason).toBeUndefined()
    expect(await host((host) => host.get("tpu-stopped"))).toMatchObject({ status: "stopped" })
    await instances((instances) => instances.kill("tpu-job", { removeImmediately: true }))
  }, 60_000)

  it("refuses malformed labels on a runner and on an instance, in one line", async () => {
    const bad = spawnNode("bad-labels", "src/main.ts", { args: [], env: { ...clusterEnv(cluster.databaseUrl, cluster.home), SHARDHUB_RUNNER_LABELS: "GPU=yes please", SHARDHUB_RUNNER_PORT: "1" } })
    const exit = await bad.exited
    expect(exit.code).not.toBe(0)
    expect(bad.output()).toContain("SHARDHUB_RUNNER_LABELS / --label: label \"GPU=yes please\": a key is 1–63 lower-case letters")
    const refused = await host((host) => Effect.flip(host.start({ ...audited("bad", "/dev/null"), placement: { on: { "Bad Key": "x" } } })))
    expect(refused).toMatchObject({ _tag: "InvalidSpec" })
  })
})
