/**
 * Two runner processes and one client-only process on a fresh database: probes answer from both
 * runners; after one runner is SIGKILLed (crash) or SIGTERMed (graceful stop), its probes answer
 * from the survivor, and no probe was ever active on both runners at once.
 */
import type { SqlClient } from "effect/sql/SqlClient"
import { describe, expect, it } from "vitest"
import { freshDatabase } from "../support/database.ts"
import { type ClientAnswer, useProcesses } from "../support/harness.ts"
import { eventually } from "../support/processes.ts"
import { query } from "../support/sql.ts"

const probeIds = Array.from({ length: 48 }, (_, i) => `probe-${i}`)

describe("a two-runner cluster", () => {
  const processes = useProcesses()

  it.each(["SIGKILL", "SIGTERM"] as const)("serves probes from both runners and fails over after %s", async (signal) => {
    const databaseUrl = await freshDatabase("smoke")
    const [a, b] = await Promise.all([
      processes.runner("runner-a", databaseUrl),
      processes.runner("runner-b", databaseUrl)
    ])
    const client = await processes.client("client", databaseUrl)

    // Once both runners hold shards, probes answer from both.
    const placement = await eventually(async () => {
      const answers = await Promise.all(probeIds.map((id) => client.whoami(id)))
      const runners = new Set(answers.map((answer) => answer.ok ? answer.runner : "error"))
      return runners.size === 2 && runners.has(a.address) && runners.has(b.address) ? answers : undefined
    }, { timeoutMs: 30_000, what: "probes on both runners" })
    const onB = probeIds.filter((_, i) => (placement[i] as ClientAnswer & { ok: true }).runner === b.address)
    expect(onB.length).toBeGreaterThan(0)

    const killedAt = new Date()
    const exit = await b.kill(signal)
    // A graceful stop ends the process by itself, after handing its shards back.
    if (signal === "SIGTERM") expect(exit.signal).toBeNull()

    // Every probe that lived on b answers again, now from a.
    const afterFailover = await eventually(async () => {
      const answers = await Promise.all(onB.map((id) => client.whoami(id, 1_000)))
      return answers.every((answer) => answer.ok && answer.runner === a.address) ? answers : undefined
    }, { timeoutMs: 20_000, what: "b's probes to answer from a" })
    expect(afterFailover).toHaveLength(onB.length)

    // One live copy: every activation of those probes on a started after b's ended. A crashed
    // runner records no end, so its end is the moment it was killed.
    const activations = await query<{ entity_id: string; runner: string; started_at: Date; ended_at: Date | null }>(
      databaseUrl,
      (sql: SqlClient) =>
        sql`SELECT entity_id, runner, started_at, ended_at FROM shardhub_activations
            WHERE entity_type = 'Probe' AND entity_id IN ${sql.in(onB)} ORDER BY started_at`
    )
    const onA = activations.filter((row) => row.runner === a.address)
    expect(new Set(onA.map((row) => row.entity_id))).toEqual(new Set(onB))
    for (const row of onA) {
      const ends = activations
        .filter((other) => other.entity_id === row.entity_id && other.runner === b.address)
        .map((other) => signal === "SIGTERM" ? other.ended_at!.getTime() : killedAt.getTime())
      expect(ends.length).toBeGreaterThan(0)
      for (const end of ends) expect(row.started_at.getTime()).toBeGreaterThanOrEqual(end)
    }
  })
})
