/**
 * Failover and store-load benchmark at the default timings (or SHARDHUB_* overrides in the
 * environment), with real runner processes on a durable embedded store:
 *
 * 1. Store load: 3 idle runners; transactions per second the store serves them
 *    (pg_stat_database, over `--idle` seconds).
 * 2. Failover: `--rounds` times, SIGKILL the runner holding the most probes and time until every
 *    one of its probes answers from a survivor; a fresh runner replaces it for the next round.
 *    The raw OS baseline is what a plain supervisor would do instead: start a new runner process
 *    and wait until it serves (spawn → ready), measured in the same run.
 *
 *   npm run bench:failover [-- --rounds 5 --idle 30]
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { parseArgs } from "node:util"
import * as Probe from "../src/node/Probe.ts"
import { clientRuntime, percentile, printTable, runMain, startRunner, tearDown, temporaryStore } from "./support.ts"

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" }, idle: { type: "string", default: "30" } } })
const rounds = Number(values.rounds)
const idleSeconds = Number(values.idle)
const probeIds = Array.from({ length: 60 }, (_, i) => `failover-${i}`)

const main = async () => {
  const store = await temporaryStore()
  const runners = await Promise.all([1, 2, 3].map((i) => startRunner(`runner-${i}`, store.databaseUrl)))
  const runtime = clientRuntime(store.databaseUrl)
  let next = 4
  try {
    // 1. Store load with 3 idle runners (and this idle client-only participant).
    const transactions = () => runtime.runPromise(Effect.gen(function*() {
      const sql = yield* SqlClient
      const [row] = yield* sql<{ readonly n: string }>`SELECT (xact_commit + xact_rollback)::text AS n
        FROM pg_stat_database WHERE datname = current_database()`
      return Number(row!.n)
    }))
    await new Promise((resolve) => setTimeout(resolve, 5_000)) // let assignments settle
    const before = await transactions()
    const started = Date.now()
    await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000))
    const perSecond = ((await transactions()) - before) / ((Date.now() - started) / 1000)
    console.log(`\nstore load, 3 idle runners + 1 idle client: ${perSecond.toFixed(1)} transactions/s ` +
      `(${(perSecond / 3).toFixed(1)} per runner), over ${idleSeconds} s`)

    // 2. Failover rounds.
    const whoami = (id: string, timeout: number) =>
      runtime.runPromise(Effect.gen(function*() {
        const probe = (yield* Probe.Probe.client)(id)
        return yield* probe.Whoami().pipe(Effect.timeout(timeout))
      }))
    const failovers: Array<number> = []
    const coldStarts: Array<number> = []
    for (let round = 1; round <= rounds; round++) {
      const placement = await Promise.all(probeIds.map((id) => whoami(id, 30_000)))
      const counts = new Map<string, number>()
      for (const a of placement) counts.set(a.runner, (counts.get(a.runner) ?? 0) + 1)
      const victimAddress = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0]
      const victim = runners.find((r) => r.address === victimAddress)!
      const victimProbes = probeIds.filter((_, i) => placement[i]!.runner === victimAddress)

      const killedAt = performance.now()
      await victim.kill("SIGKILL")
      await Promise.all(victimProbes.map(async (id) => {
        for (;;) {
          const answer = await whoami(id, 500).catch(() => undefined)
          if (answer !== undefined && answer.runner !== victimAddress) return
        }
      }))
      failovers.push(performance.now() - killedAt)

      const spawnedAt = performance.now()
      runners.splice(runners.indexOf(victim), 1, await startRunner(`runner-${next++}`, store.databaseUrl))
      coldStarts.push(performance.now() - spawnedAt)
      console.log(`round ${round}: ${victimProbes.length} probes moved in ${failovers.at(-1)!.toFixed(0)} ms; ` +
        `replacement runner served after ${coldStarts.at(-1)!.toFixed(0)} ms`)
    }
    failovers.sort((a, b) => a - b)
    coldStarts.sort((a, b) => a - b)
    printTable(`failover after SIGKILL (${rounds} rounds, 3 runners) vs a cold runner restart`, [
      ["p50", percentile(coldStarts, 50), percentile(failovers, 50), "ms"],
      ["max", coldStarts.at(-1)!, failovers.at(-1)!, "ms"]
    ])
  } finally {
    await tearDown({ runtime, runners, store })
  }
}

runMain(main)
