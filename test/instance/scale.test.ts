/**
 * A thousand instances on one runner: every one is started and runs its own OS process, every
 * one stops, and nothing is left behind — no process, no live record, no open file, and the
 * runner gives their memory back (see node/HeapSettler).
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import type { InstanceInfo } from "../../src/instance/InstanceSpec.ts"
import { useCluster } from "../support/cluster.ts"
import { eventually, isAlive } from "../support/processes.ts"

const COUNT = 1000
const IN_FLIGHT = 16

/** Runs `task` for 0 … count-1, `IN_FLIGHT` at a time. */
const pool = async <A>(count: number, task: (i: number) => Promise<A>): Promise<Array<A>> => {
  const results: Array<A> = []
  let next = 0
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < count) {
      const i = next++
      results[i] = await task(i)
    }
  }))
  return results
}

const openFds = (pid: number) => Fs.readdirSync(`/proc/${pid}/fd`).length
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024
const commandOf = (pid: number) => Fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")

describe("scale", () => {
  // Ended instances' entities leave memory after 2 s instead of a minute.
  const cluster = useCluster("scale", { runners: 1, env: { SHARDHUB_ENTITY_MAX_IDLE: "2 seconds" } })

  it(`starts ${COUNT} instances on one runner and stops them all`, async () => {
    const runner = cluster.runners[0]!
    const fdsBefore = openFds(runner.pid)
    const rssBefore = rssMb(runner.pid)
    const started = await pool(COUNT, (i) =>
      cluster.run(Effect.flatMap(HostClient, (host) =>
        host.start({ name: `sleeper-${i}`, program: { _tag: "Command", command: "sleep", args: ["3600"] } }))))

    // Every one runs a process of its own, on this runner.
    const running = await cluster.run(Effect.flatMap(HostClient, (host) => host.list()))
    const mine = running.filter((info) => started.some((s) => s.id === info.id))
    expect(mine).toHaveLength(COUNT)
    const pids = mine.map((info: InstanceInfo) => {
      expect(info.status).toBe("running")
      expect(info.runner).toBe(runner.address)
      expect(commandOf(info.pid!)).toEqual(["sleep", "3600", ""])
      return info.pid!
    })
    expect(new Set(pids).size).toBe(COUNT)

    const stopped = await pool(COUNT, (i) =>
      cluster.run(Effect.flatMap(InstanceClient, (instances) => instances.stop(started[i]!.id))))
    expect(stopped.every((info) => info.status === "stopped")).toBe(true)

    // Nothing is left: no process, no live instance, no file the runner still holds for them.
    expect(pids.filter(isAlive)).toEqual([])
    const live = await cluster.run(Effect.flatMap(HostClient, (host) => host.list({ statuses: ["starting", "running", "stopping"] })))
    expect(live).toEqual([])
    await eventually(async () => openFds(runner.pid) <= fdsBefore + IN_FLIGHT || undefined, {
      what: `the runner to close what it held for the instances (${openFds(runner.pid)} fds, ${fdsBefore} before)`
    })
    // Their memory too: within 20 % of the runner's before they started (it held ~300 MB for
    // minutes after they stopped before the runner ran a full collection for them).
    await eventually(async () => rssMb(runner.pid) <= rssBefore * 1.2 || undefined, {
      timeoutMs: 90_000,
      intervalMs: 1000,
      what: `the runner's memory back within 20 % of ${rssBefore.toFixed(0)} MB (${rssMb(runner.pid).toFixed(0)} MB)`
    })
  }, 600_000)
})
