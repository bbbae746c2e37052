/**
 * Durable topics with real runner processes: a producer instance and a consumer instance on
 * different runners (placed by labels), wired to a durable topic. The consumer's runner is
 * SIGKILLed mid-stream: the consumer comes back on the other runner that may run it and goes on
 * from its cursor. Every record arrives, in order; the only repeats are the last ones its dead
 * process was handed (at least once), or, for a consumer that acknowledges what it consumed,
 * only what it had not acknowledged yet. The runner of neither end dying changes nothing: the
 * topic lives in the store.
 */
import { Effect, Stream } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import type { InstanceSpec } from "../../src/instance/InstanceSpec.ts"
import { maxInFlightBytes } from "../../src/topic/Durable.ts"
import { useCluster } from "../support/cluster.ts"
import { eventually, root } from "../support/processes.ts"
import { query } from "../support/sql.ts"

/** Prints records `0` … `count - 1` (one line each, ~100 bytes), `perTick` every 10 ms. */
const producer = (count: number, perTick: number) =>
  `let i = 0; const pad = 'x'.repeat(90); const t = setInterval(() => { let out = ''; ` +
  `for (let k = 0; k < ${perTick} && i < ${count}; k++) out += (i++) + ' ' + pad + '\\n'; process.stdout.write(out); ` +
  `if (i >= ${count}) clearInterval(t) }, 10); setInterval(() => {}, 1000)`

describe("durable topics", () => {
  const cluster = useCluster("durable", { runners: 0 })
  const host = <A, E>(f: (host: HostClient["Service"]) => Effect.Effect<A, E>) => cluster.run(Effect.flatMap(HostClient, f))

  /**
   * `count` numbered records from a producer (on `role=p`) through the durable topic `topic` to a
   * consumer running `program(out)` (on `role=c`, `OUT` set to `out`), whose runner is SIGKILLed
   * once a quarter of them arrived: the consumer's record, the runner killed, and the numbers
   * of what was consumed, in the order they arrived, once the last record did.
   */
  const acrossConsumerKill = async (topic: string, program: (out: string) => InstanceSpec["program"], count: number) => {
    const out = Path.join(cluster.home, `${topic}.out`)
    const consumer = await host((host) =>
      host.start({
        program: program(out),
        env: { set: { OUT: out } },
        topics: { input: topic },
        restart: { mode: "always", backoffMs: 100 },
        placement: { on: { role: "c" } }
      }, { id: `${topic}-consumer` }))
    await host((host) =>
      host.start({
        program: { _tag: "Command", command: process.execPath, args: ["-e", producer(count, 200)] },
        topics: { output: topic },
        placement: { on: { role: "p" } }
      }, { id: `${topic}-producer` }))
    const lines = () => Fs.existsSync(out) ? Fs.readFileSync(out, "utf8").split("\n").filter(Boolean) : []
    await eventually(async () => lines().length > count / 4 || undefined, { timeoutMs: 30_000, what: "a quarter of the records consumed" })
    const victim = cluster.runners.find((r) => r.address === consumer.runner)!
    await victim.kill("SIGKILL")
    const all = await eventually(async () => {
      const got = lines()
      return Number(got.at(-1)?.split(" ")[0]) === count - 1 ? got : undefined
    }, { timeoutMs: 60_000, intervalMs: 200, what: "the last record consumed" })
    return { consumer, victim, numbers: all.map((line) => Number(line.split(" ")[0])) }
  }

  it("keeps every record across a kill of the consumer's runner, in order, repeating at most what was in flight", async () => {
    cluster.printOnFailure()
    const producerRunner = await cluster.startRunner("producer", { SHARDHUB_RUNNER_LABELS: "role=p" })
    const consumerRunners = [
      await cluster.startRunner("consumer-a", { SHARDHUB_RUNNER_LABELS: "role=c" }),
      await cluster.startRunner("consumer-b", { SHARDHUB_RUNNER_LABELS: "role=c" })
    ]
    await cluster.waitForShards()
    expect(await host((host) => host.createTopic("orders", "text/plain", { durable: true }))).toMatchObject({ name: "orders", durable: true })

    const count = 60_000
    // Mid-stream, the consumer's runner dies.
    const { consumer, victim, numbers } = await acrossConsumerKill(
      "orders",
      (out) => ({ _tag: "Command", command: "sh", args: ["-c", `exec cat >> ${out}`] }),
      count
    )
    expect(consumer.runner).not.toBe(producerRunner.address)
    expect(consumerRunners.map((r) => r.address)).toContain(victim.address)
    expect((await host((host) => host.get("orders-consumer"))).runner).not.toBe(victim.address)

    // In order, nothing missing; repeats only where the new process took over.
    let repeats = 0
    let expected = 0
    for (const n of numbers) {
      if (n === expected) expected++
      else {
        expect(n, `record ${n} after ${expected - 1}`).toBeLessThan(expected)
        repeats++
        if (n === expected - 1) continue
      }
    }
    expect(expected).toBe(count)
    console.log(`durable topic: ${count} records, consumer's runner killed: 0 lost, ${repeats} repeated (at most ${maxInFlightBytes} bytes in flight)`)
    expect(repeats * 100).toBeLessThanOrEqual(maxInFlightBytes + 64 * 1024)

    // What every consumer has is deleted from the store.
    const [kept] = await query<{ bytes: number }>(cluster.databaseUrl, (sql) =>
      sql`SELECT COALESCE(sum(length(data)), 0)::int AS bytes FROM shardhub_topic_log WHERE topic = 'orders'`)
    expect(kept!.bytes).toBeLessThanOrEqual(maxInFlightBytes + 64 * 1024)
  }, 180_000)

  it("repeats only the last acknowledgements its runner had not stored yet, for a consumer that acknowledges what it consumed", async () => {
    cluster.printOnFailure()
    // The last case killed one of the two consumer runners: another, so that one is left after this kill.
    await cluster.startRunner("consumer-c", { SHARDHUB_RUNNER_LABELS: "role=c" })
    await cluster.waitForShards()
    await host((host) => host.createTopic("acked-orders", "text/plain", { durable: true }))
    const count = 60_000
    const { numbers } = await acrossConsumerKill(
      "acked-orders",
      () => ({ _tag: "Command", command: process.execPath, args: [Path.join(root, "test/instance/fixtures/acking.mjs")] }),
      count
    )
    const seen = new Set(numbers)
    const repeats = numbers.length - seen.size
    console.log(`durable topic, acknowledging consumer: ${count} records, its runner killed: ${count - seen.size} lost, ${repeats} repeated`)
    expect(seen.size).toBe(count)
    // Only what it consumed but had not acknowledged, or what its runner had not stored yet, when it
    // was killed: the chunk in hand and a commit's round trip — a fraction of the ~2 MiB an
    // unacknowledged consumer may get again.
    expect(repeats * 100).toBeLessThanOrEqual(256 * 1024)
  }, 180_000)

  it("publishes and reads a durable topic from a client too; bad names are refused; deleting it deletes its chunks", async () => {
    await host((host) => host.createTopic("client-durable", "application/octet-stream", { durable: true }))
    const reading = cluster.run(Effect.flatMap(HostClient, (host) =>
      host.subscribe("client-durable").pipe(Stream.decodeText, Stream.mkString, Effect.timeout("200 millis"), Effect.option)))
    await host((host) => host.publish("client-durable", Stream.make(new TextEncoder().encode("kept in the store\n"))))
    const [row] = await query<{ n: number }>(cluster.databaseUrl, (sql) => sql`SELECT count(*)::int AS n FROM shardhub_topic_log WHERE topic = 'client-durable'`)
    expect(row!.n).toBe(1)
    await reading
    expect(await host((host) => Effect.flip(host.createTopic("bad name", "text/plain", { durable: true })))).toMatchObject({ reason: "InvalidName" })
    // Deleting the topic deletes what it kept.
    await host((host) => host.deleteTopic("client-durable"))
    const [left] = await query<{ n: number }>(cluster.databaseUrl, (sql) => sql`SELECT count(*)::int AS n FROM shardhub_topic_log WHERE topic = 'client-durable'`)
    expect(left!.n).toBe(0)
  })
})
