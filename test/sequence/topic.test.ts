/**
 * Topics between instances on two runner processes, and between clients: every item arrives
 * exactly once, in order.
 */
import { Effect, Fiber, Schedule, Stream } from "effect"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import * as Instance from "../../src/instance/Instance.ts"
import { textUntil } from "../support/bytes.ts"
import { useCluster } from "../support/cluster.ts"
import { fixture } from "./fixtures.ts"

const COUNT = 2000
const ndjson = "application/x-ndjson"

describe("topics", () => {
  // Entities passivate after a second without requests or keep-alive (Effect's reaper looks every 5 s).
  const cluster = useCluster("topics", { runners: 2, env: { SHARDHUB_ENTITY_MAX_IDLE: "1 second" } })

  it("connect an instance on one runner to an instance on another, every item once, in order", async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const generator = yield* host.sendSequence(fixture("generator"))
      const passthrough = yield* host.sendSequence(fixture("passthrough"))
      const consumer = yield* host.startSequence(passthrough.id, { topics: { input: "numbers", contentType: ndjson } })
      // Producers wait for "go". Started one at a time (each on the runner its id hashes to)
      // until one lands on the other runner; those on the consumer's runner are killed unused.
      const producerElsewhere = Effect.gen(function*() {
        for (let attempt = 0; attempt < 40; attempt++) {
          const started = yield* host.startSequence(generator.id, { args: [COUNT], topics: { output: "numbers", contentType: ndjson } })
          if (started.runner !== consumer.runner) return started
          yield* instances.kill(started.id)
        }
        return yield* Effect.die("40 producers in a row landed on the consumer's runner")
      })
      const producer = yield* producerElsewhere
      yield* instances.sendEvent(producer.id, "go")
      const lines = yield* instances.output(consumer.id).pipe(
        Stream.decodeText(),
        Stream.splitLines,
        Stream.take(COUNT),
        Stream.runCollect
      )
      return { lines, producer, consumer }
    }))
    expect(result.producer.runner).not.toBe(result.consumer.runner)
    expect(result.lines.map((line) => JSON.parse(line).n)).toEqual(Array.from({ length: COUNT }, (_, n) => n))
  })

  it("keeps an instance fed by a topic on the runner's input path: a client's input to it is relayed, never taken by the process", async () => {
    cluster.printOnFailure()
    const ticket = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const passthrough = yield* host.sendSequence(fixture("passthrough"))
      const consumer = yield* host.startSequence(passthrough.id, { topics: { input: "fed-here", contentType: ndjson } })
      return yield* (yield* Instance.Instance.client)(consumer.id).Open({ stream: "input", direct: true })
    }))
    expect(ticket.direct).toBeUndefined()
  })

  for (const consumerFixture of [{ fixture: "requires", topic: "declared" }, { fixture: "requires-py", topic: "declared-py" }]) {
    it(`connect sequences that declare their topics (${consumerFixture.fixture} requires, a generator provides)`, async () => {
      cluster.printOnFailure()
      const result = await cluster.run(Effect.gen(function*() {
        const host = yield* HostClient
        const instances = yield* InstanceClient
        const generator = yield* host.sendSequence(fixture("generator"))
        const requires = yield* host.sendSequence(fixture(consumerFixture.fixture))
        const consumer = yield* host.startSequence(requires.id)
        const producer = yield* host.startSequence(generator.id, { args: [100, consumerFixture.topic] })
        yield* instances.sendEvent(producer.id, "go")
        const lines = yield* instances.output(consumer.id).pipe(Stream.decodeText(), Stream.splitLines, Stream.take(100), Stream.runCollect)
        return { lines, listed: yield* host.listTopics }
      }))
      expect(result.lines.map((line) => JSON.parse(line).n)).toEqual(Array.from({ length: 100 }, (_, n) => n))
      // A topic a sequence declared is listed as the cluster's.
      expect(result.listed).toContainEqual({ name: consumerFixture.topic, contentType: "application/x-ndjson" })
    })
  }

  it("feed the next process of a topic-fed sequence restarted after a crash, with its own input header", async () => {
    cluster.printOnFailure()
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const passthrough = yield* host.sendSequence(fixture("passthrough"))
      const consumer = yield* host.startSequence(passthrough.id, {
        topics: { input: "restarts", contentType: "text/plain" },
        restart: { mode: "always", backoffMs: 0 }
      })
      const outputUntil = (expected: string) =>
        textUntil(instances.output(consumer.id), expected.length).pipe(Effect.timeout("20 seconds"))
      yield* host.publish("restarts", Stream.make(new TextEncoder().encode("first\n")))
      const before = yield* outputUntil("first\n")
      // A crash the cluster did not ask for: the restart policy starts the process again.
      process.kill(consumer.pid!, "SIGKILL")
      const restarted = yield* instances.info(consumer.id).pipe(
        Effect.repeat({ until: (info) => info.restarts === 1 && info.status === "running", schedule: Schedule.spaced("50 millis") }),
        Effect.timeout("20 seconds")
      )
      yield* host.publish("restarts", Stream.make(new TextEncoder().encode("second\n")))
      const after = yield* outputUntil("first\nsecond\n")
      yield* instances.kill(consumer.id)
      return { before, after, restarted, pid: consumer.pid }
    }))
    expect(result.before).toBe("first\n")
    expect(result.restarted.pid).not.toBe(result.pid)
    expect(result.after).toBe("first\nsecond\n")
  })

  it("carry bytes from a client to every subscribed client, each once; what came before any subscriber waits for the first", async () => {
    cluster.printOnFailure()
    const chunks = Array.from({ length: 300 }, (_, i) => new TextEncoder().encode(`${i}\n`))
    const text = (all: ReadonlyArray<Uint8Array>) => all.map((c) => new TextDecoder().decode(c)).join("")
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      // Nobody listens yet: the first 100 wait.
      yield* host.publish("api-topic", Stream.fromIterable(chunks.slice(0, 100)))
      const waiting = yield* host.describeTopic("api-topic")
      const first = yield* host.subscribe("api-topic").pipe(Stream.take(300), Stream.runCollect, Effect.forkChild)
      const second = yield* host.subscribe("api-topic").pipe(Stream.take(200), Stream.runCollect, Effect.forkChild)
      yield* host.describeTopic("api-topic").pipe(
        Effect.repeat({ until: (topic) => topic.consumers === 2, schedule: Schedule.spaced("20 millis") })
      )
      yield* host.publish("api-topic", Stream.fromIterable(chunks.slice(100)))
      return { waiting, first: text(yield* Fiber.join(first)), second: text(yield* Fiber.join(second)) }
    }))
    expect(result.waiting).toMatchObject({ consumers: 0, waitingChunks: 100 })
    expect(result.first).toBe(text(chunks))
    expect(result.second).toBe(text(chunks.slice(100)))
  })

  it("end the stream of their consumers when a publish says so (before or after they subscribed); what comes next starts anew", async () => {
    cluster.printOnFailure()
    const bytes = (text: string) => Stream.make(new TextEncoder().encode(text))
    const text = (all: ReadonlyArray<Uint8Array>) => all.map((c) => new TextDecoder().decode(c)).join("")
    const result = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      // Subscribed first: the stream ends after the last chunk.
      const live = yield* host.subscribe("ending-topic").pipe(Stream.runCollect, Effect.forkChild)
      yield* host.describeTopic("ending-topic").pipe(
        Effect.repeat({ until: (topic) => topic.consumers === 1, schedule: Schedule.spaced("20 millis") })
      )
      yield* host.publish("ending-topic", bytes("one\n"), { end: true })
      const first = text(yield* Fiber.join(live))
      // Published and ended before anyone subscribed: the first to come gets it, then the end.
      yield* host.publish("ending-topic", bytes("two\n"), { end: true })
      const second = text(yield* host.subscribe("ending-topic").pipe(Stream.runCollect))
      // After an end, chunks wait for a new consumer as on a new topic.
      yield* host.publish("ending-topic", bytes("three\n"))
      const third = text(yield* host.subscribe("ending-topic").pipe(Stream.take(1), Stream.runCollect))
      return { first, second, third }
    }))
    expect(result).toEqual({ first: "one\n", second: "two\n", third: "three\n" })
  })

  it("keep what waits for a first subscriber while the topic is idle, past the entities' idle time", async () => {
    cluster.printOnFailure()
    const chunks = Array.from({ length: 20 }, (_, i) => new TextEncoder().encode(`${i}\n`))
    const received = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      yield* host.publish("idle-topic", Stream.fromIterable(chunks))
      // The condition is time itself: the topic gets no request for longer than the idle time
      // plus the reaper's 5 s period, which passivates any entity not kept alive.
      yield* Effect.sleep("7 seconds")
      return yield* host.subscribe("idle-topic").pipe(Stream.take(20), Stream.runCollect, Effect.timeout("10 seconds"))
    }))
    expect(received.map((chunk) => new TextDecoder().decode(chunk)).join("")).toBe(chunks.map((c) => new TextDecoder().decode(c)).join(""))
  })
})
