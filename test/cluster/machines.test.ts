/**
 * The several-machine acceptance (`npm run machines`): three network namespaces with their own
 * homes, runners on TLS, Postgres over TCP. Placement holds through a failover, a bundle moves
 * with its command, a drain moves every instance of a runner, a durable topic loses nothing when
 * its consumer's runner dies, and no two copies of any instance ever run at once. Needs root and `ip netns`; skipped with the reason without them.
 */
import * as ChildProcess from "node:child_process"
import { describe, expect, it } from "vitest"
import * as Netns from "../../scripts/netns.ts"
import { root } from "../support/processes.ts"

const available = Netns.available()

describe("several machines", () => {
  it.skipIf(!available)("places, moves bundles, drains, and never runs two copies at once (needs root and ip netns)", () => {
    const result = ChildProcess.spawnSync(process.execPath, ["scripts/machines.ts", "--json", "--drain-instances", "10", "--topic-mib", "8", "--records", "20000"], {
      cwd: root,
      encoding: "utf8",
      timeout: 600_000
    })
    if (result.status !== 0) console.error(result.stderr)
    expect(result.status).toBe(0)
    const report = JSON.parse(result.stdout.trim().split("\n").at(-1)!)
    console.log(`machines: ${JSON.stringify(report)}`)
    expect(report).toMatchObject({ machines: 3, transport: "tls", placement_ok: true, bundle_moved: true, overlaps: 0, topic_lost: 0 })
    expect(report.drain_instances).toBeGreaterThan(0)
    // Every moved instance ran again on the other machine (a missing second copy is an infinite gap).
    expect(report.drain_max_gap_ms).toBeLessThan(Infinity)
  }, 600_000)
})
