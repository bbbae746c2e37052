/**
 * An instance's topics: its output published to one (from its first byte), its input fed from
 * another — by the instance's spec (`topics`) or by what a sequence declares at start (STH's
 * `requires` / `provides`).
 *
 * @since 0.6.0
 */
import { Effect, Schedule, type Scope, type Sink, Stream } from "effect"
import type { StdinError } from "../process/ProcessErrors.ts"
import type { Status } from "../process/ProcessStatus.ts"
import type { InstanceSpec } from "./InstanceSpec.ts"
import type { Topic } from "../topic/Topic.ts"
import type * as TopicRegistry from "../topic/TopicRegistry.ts"
import type { Durable } from "../topic/Durable.ts"

/** Repeats a topic publish whose answer was lost to a shard move (the topic drops the repeat). */
const retryTopic = <A, E, R>(publish: Effect.Effect<A, E, R>) =>
  publish.pipe(Effect.retry({ times: 20, schedule: Schedule.spaced("100 millis") }))

/**
 * The process side of the wiring.
 *
 * @since 0.6.0
 */
export interface Ends {
  readonly id: string
  /** Names this producer for the topic's de-duplication (one per claim of the instance). */
  readonly producer: string
  /** The program's output, from its first byte. */
  readonly output: Stream.Stream<Uint8Array>
  /** A sink into the live process's input. */
  readonly input: Sink.Sink<void, Uint8Array, never, StdinError>
  /** The process's status changes: each new pid gets a feed of its own. */
  readonly changes: Stream.Stream<Status>
  /** What the input of process `pid` starts with, if it did not get it yet. */
  readonly header: (pid: number, contentType: string) => Uint8Array | undefined
  /** Bytes of its input the current process acknowledged (`{"$shardhub":"ack"}`), if it does. */
  readonly acked: () => number | undefined
  /** A new process starts counting its acknowledged input from 0. */
  readonly resetAcked: () => void
}

/** @since 0.6.0 */
export type TopicClient = Effect.Success<typeof Topic.client>

/** @since 0.6.0 */
export type KnownTopics = TopicRegistry.KnownTopics["Service"]

/**
 * Connects `ends` to the topics of `wiring` through `topics`, for as long as `scope` lasts, and
 * notes them as the cluster's known topics.
 *
 * @since 0.6.0
 */
export const connect = (
  { durable, known, topics }: { readonly topics: TopicClient; readonly known: KnownTopics; readonly durable: Durable },
  ends: Ends,
  wiring: NonNullable<InstanceSpec["topics"]>,
  scope: Scope.Scope
) =>
  Effect.gen(function*() {
    const contentType = wiring.contentType ?? "application/octet-stream"
    // Listed as the cluster's topics from now on.
    for (const name of [wiring.input, wiring.output]) if (name !== undefined) yield* known.note(name, contentType, "instance")
    // A durable topic lives in the store (see `topic/Durable`), another one in its entity.
    const isDurable = (topic: string) =>
      durable.isDurable(topic).pipe(Effect.retry({ times: 20, schedule: Schedule.spaced("100 millis") }), Effect.orElseSucceed(() => false))
    const output = wiring.output
    if (output !== undefined) {
      let seq = 0
      const publish = (yield* isDurable(output))
        ? (chunks: ReadonlyArray<Uint8Array>) => retryTopic(durable.append(output, ends.producer, seq++, chunks))
        : (chunks: ReadonlyArray<Uint8Array>) =>
          retryTopic(topics(output).Publish({ producer: ends.producer, seq: seq++, contentType, chunks: [...chunks] }))
      yield* Effect.forkIn(
        ends.output.pipe(
          Stream.runForEachArray(publish),
          Effect.catchCause((cause) => Effect.logWarning(`instance ${ends.id}: publishing to topic ${output} stopped`, cause))
        ),
        scope
      )
    }
    const input = wiring.input
    if (input !== undefined) {
      // Each process (a restart policy starts new ones) reads the topic through a subscription
      // of its own, which ends with it (it would otherwise hold chunks nobody reads); while none
      // runs, the topic keeps what is published for the next subscriber. A durable topic's
      // consumer is the instance: the next process goes on from its cursor.
      const stored = yield* isDurable(input)
      const feed = (pid: number) =>
        Effect.suspend(() => {
          const first = ends.header(pid, contentType)
          const into = <E>(bytes: Stream.Stream<Uint8Array, E>) =>
            (first === undefined ? bytes : Stream.concat(Stream.make(first), bytes)).pipe(Stream.run(ends.input))
          if (!stored) return into(topics(input).Subscribe())
          // What the process acknowledges counts its header too.
          ends.resetAcked()
          const header = first?.length ?? 0
          return into(durable.consume(input, ends.id, () => {
            const acked = ends.acked()
            return acked === undefined ? undefined : Math.max(0, acked - header)
          }))
        }).pipe(
          // The process ended: the next one (if any) gets its own feed.
          Effect.catchTag("StdinError", () => Effect.void),
          Effect.catchCause((cause) => Effect.logWarning(`instance ${ends.id}: reading topic ${input} stopped`, cause))
        )
      yield* Effect.forkIn(
        ends.changes.pipe(
          Stream.map((status) => "pid" in status ? status.pid : undefined),
          Stream.changes,
          Stream.switchMap((pid) => pid === undefined ? Stream.empty : Stream.fromEffectDrain(feed(pid))),
          Stream.runDrain
        ),
        scope
      )
    }
  })
