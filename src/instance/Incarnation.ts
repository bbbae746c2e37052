/**
 * An incarnation: the process an `Instance` activation runs under one claim (epoch), kept
 * across the restarts its restart policy makes — its handle, its events (the latest of each name
 * kept), its health, and what its program sends on the message channel. (A `Run` of the
 * ProcessManager is one OS process; an incarnation may span several.)
 *
 * @since 0.6.0
 */
import { Deferred, Effect, Option, PubSub, Stream } from "effect"
import * as InstanceMetrics from "../metrics/InstanceMetrics.ts"
import * as Control from "../process/Control.ts"
import type { ChannelEvent } from "../process/ManagedProcess.ts"
import type { ProcessHandle } from "../process/ProcessHandle.ts"
import { isTopicName } from "../topic/Topic.ts"
import { NotRunning } from "./InstanceErrors.ts"
import type { ProcessStats } from "../process/ProcessStatus.ts"
import { type Health, type InstanceEvent, type InstanceInfo, type InstanceSpec, isEnded } from "./InstanceSpec.ts"
import * as LastEvents from "./LastEvents.ts"
import { type Program, programOf } from "./Program.ts"

/**
 * @since 0.6.0
 */
export interface Incarnation {
  readonly handle: ProcessHandle
  readonly epoch: number
  /** Restarts before this process (earlier owners). */
  readonly restartsBefore: number
  stopRequested: boolean
  /** Resolved with the final record once the end was reported. */
  readonly settled: Deferred.Deferred<InstanceInfo>
  /** Events the process emits; `undefined` marks the end. */
  readonly events: PubSub.PubSub<InstanceEvent | undefined>
  readonly last: LastEvents.LastEvents
  /** What differs between a command and a sequence. */
  readonly program: Program
  /** The health a sequence last reported. */
  health: { readonly healthy: boolean } | undefined
  /** Called when a sequence asks to be kept alive during a stop. */
  readonly keptAlive: Set<() => void>
  /**
   * The process (pid) the input's Content-Type header went to: a restart policy starts new
   * processes in the same run, and each reads its own header.
   */
  inputHeaderTo: number | undefined
  /** Bytes of its input the current process said it consumed (`{"$shardhub":"ack"}`), if it says. */
  acked: number | undefined
}

/**
 * A run of `spec`'s program in `handle`, claimed with `epoch`.
 *
 * @since 0.6.0
 */
export const make = (handle: ProcessHandle, spec: InstanceSpec, epoch: number, restartsBefore: number) =>
  Effect.map(PubSub.sliding<InstanceEvent | undefined>(64), (events): Incarnation => ({
    handle,
    epoch,
    restartsBefore,
    stopRequested: false,
    settled: Deferred.makeUnsafe(),
    events,
    last: LastEvents.make(),
    program: programOf(spec),
    health: undefined,
    keptAlive: new Set(),
    inputHeaderTo: undefined,
    acked: undefined
  }))

/**
 * What the input of process `pid` starts with, if it did not get it yet (once per process).
 *
 * @since 0.6.0
 */
export const headerFor = (run: Incarnation, pid: number | undefined, contentType: string) => {
  if (pid === undefined || run.inputHeaderTo === pid) return undefined
  run.inputHeaderTo = pid
  return run.program.header(contentType)
}

/**
 * What a runner logs about a `$shardhub` message that does not follow the protocol (the tests
 * check that the in-child runners never cause it).
 *
 * @since 0.6.0
 */
export const CONTROL_MISMATCH = "a control message that does not follow the protocol"

const isEvent = (value: unknown): value is { readonly event: string; readonly data?: unknown } =>
  typeof value === "object" && value !== null && typeof (value as { event?: unknown }).event === "string"

/**
 * Takes what the run's process sends: events (published, the latest of each name kept), health,
 * keep-alive, and the topics a sequence declares (handed to `topics`).
 *
 * @since 0.6.0
 */
export const collect = <E, R>(
  id: string,
  run: Incarnation,
  messages: Stream.Stream<ChannelEvent>,
  topics: (wiring: NonNullable<InstanceSpec["topics"]>) => Effect.Effect<void, E, R>,
  /** Whether the run's epoch is still the instance's current one on record. */
  current: Effect.Effect<boolean>
) =>
  messages.pipe(
    Stream.runForEach((message) => {
      if (message._tag !== "Message") return Effect.void
      const control = Control.fromChild(message.value)
      switch (control?.$shardhub) {
        case "health":
          run.health = { healthy: control.healthy }
          return Effect.void
        case "keepAlive":
          for (const kept of run.keptAlive) kept()
          return Effect.void
        case "ack":
          run.acked = Math.max(run.acked ?? 0, control.bytes)
          return Effect.void
        case "bytes":
          return InstanceMetrics.directBytes(control.in, control.out)
        case "epoch": {
          const answer = (current: boolean): Control.ToChild => ({ $shardhub: "epoch", epoch: run.epoch, current })
          return Effect.flatMap(current, (ok) => Effect.ignore(run.handle.send(answer(ok))))
        }
        case "topics": {
          // STH's requires / provides.
          const name = (value: string | null | undefined) => typeof value === "string" && isTopicName(value) ? value : undefined
          const input = name(control.requires)
          const output = name(control.provides)
          return topics({
            ...(input === undefined ? {} : { input }),
            ...(output === undefined ? {} : { output }),
            ...(typeof control.contentType === "string" ? { contentType: control.contentType } : {})
          })
        }
      }
      if (Control.isControl(message.value)) {
        return Effect.logWarning(`instance ${id}: ${CONTROL_MISMATCH}: ${JSON.stringify(message.value).slice(0, 200)}`)
      }
      if (!isEvent(message.value)) return Effect.void
      const event: InstanceEvent = { name: message.value.event, data: message.value.data ?? null }
      return run.last.set(event) ? PubSub.publish(run.events, event) : Effect.void
    })
  )

/**
 * An instance's health: its record, what its program last said of its health, its usage.
 *
 * @since 0.6.0
 */
export const health = (record: InstanceInfo, run: Incarnation | undefined, stats: Option.Option<ProcessStats>): Health => ({
  id: record.id,
  status: record.status,
  healthy: record.status === "running" && run?.health?.healthy !== false,
  ...(record.runner === undefined ? {} : { runner: record.runner }),
  ...(record.pid === undefined ? {} : { pid: record.pid }),
  ...(record.startedAt === undefined || isEnded(record.status) ? {} : { uptimeMs: Date.now() - record.startedAt }),
  restarts: record.restarts,
  ...(Option.isSome(stats) ? { stats: stats.value } : {})
})

/**
 * The run's next event named `name`; fails when the process ends first.
 *
 * @since 0.6.0
 */
export const nextEvent = (run: Incarnation, id: string, name: string) =>
  Effect.scoped(Effect.gen(function*() {
    const subscription = yield* PubSub.subscribe(run.events)
    while (true) {
      const event = yield* PubSub.take(subscription)
      if (event === undefined) return yield* new NotRunning({ id, status: "ended" })
      if (event.name === name) return event
    }
  }))

/**
 * The run's events from now on (only those named `name`, if given), ending with the process.
 *
 * @since 0.6.0
 */
export const events = (run: Incarnation, name: string | undefined) =>
  Stream.fromPubSub(run.events).pipe(
    Stream.takeWhile((event): event is InstanceEvent => event !== undefined),
    Stream.filter((event) => name === undefined || event.name === name)
  )

/**
 * Asks the sequence of `run` to stop, allowing it to call `keepAlive` from its stop handlers:
 * `kept` if one did, `ended` if the process ended, `late` if neither happened within
 * `timeoutMs` (or the ask could not be sent).
 */
export const askToStop = (run: Incarnation, timeoutMs: number) =>
  Effect.suspend(() => {
    const kept = Deferred.makeUnsafe<void>()
    const onKeepAlive = () => Deferred.doneUnsafe(kept, Effect.void)
    run.keptAlive.add(onKeepAlive)
    const stop: Control.ToChild = { $shardhub: "stop", timeoutMs, canCallKeepalive: true }
    return run.handle.send(stop).pipe(
      Effect.andThen(Effect.raceFirst(Effect.as(Deferred.await(kept), "kept" as const), Effect.as(run.handle.wait, "ended" as const))),
      Effect.timeoutOrElse({ duration: timeoutMs, orElse: () => Effect.succeed("late" as const) }),
      Effect.catchTag("WriteMessageError", () => Effect.succeed("late" as const)),
      Effect.ensuring(Effect.sync(() => run.keptAlive.delete(onKeepAlive)))
    )
  })
