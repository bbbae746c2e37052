/**
 * What an `Instance` entity does on the runner that holds its shard: it owns the instance's OS
 * process through the ProcessManager and keeps the registry record up to date.
 *
 * - **Activation.** The record is read. If the instance should be running (desired `running`,
 *   not ended), this runner {@link Registry.claim}s it (the epoch fences out the previous owner)
 *   and starts its process: this is how instances come back after their runner died or handed
 *   their shard over.
 * - **Residency.** While a process is wanted the entity holds Effect's keep-alive: it never
 *   passivates, and the persisted keep-alive message is re-delivered to the next owner of the
 *   shard, which re-activates the entity there.
 * - **Release.** When the shard goes (rebalance, graceful shutdown, lost lock) the process is
 *   terminated gracefully before the shard lock is given up, and the record is left wanting to
 *   run, for the next owner. A SIGKILLed runner's processes are killed by its reaper at once,
 *   long before its lock expires. So two processes of one instance never overlap.
 * - **One run per process.** Restarts by the restart policy happen inside the ProcessManager;
 *   every status change is reported to the registry with the claim's epoch.
 *
 * @since 0.3.0
 */
import { Entity } from "effect/cluster"
import { Sharding } from "effect/cluster/Sharding"
import { Context, Deferred, Effect, Option, PubSub, Schedule, Scope, Semaphore, Stream } from "effect"
import * as Os from "node:os"
import * as Path from "node:path"
import { type ChannelEvent, isControl } from "../process/ManagedProcess.ts"
import type { KillError } from "../process/ProcessErrors.ts"
import type { Terminal } from "../process/ProcessStatus.ts"
import { isTerminal } from "../process/ProcessStatus.ts"
import { type ProcessHandle, ProcessManager } from "../process/ProcessManager.ts"
import { DataPort } from "./DataPort.ts"
import { Instance } from "./Instance.ts"
import { Fence } from "../cluster/Fence.ts"
import * as LastEvents from "./LastEvents.ts"
import { InstanceNotFound, NotRunning, StartFailed, StopTimeout } from "./InstanceErrors.ts"
import { type InstanceEvent, type InstanceInfo, type InstanceSpec, isEnded } from "./InstanceSpec.ts"
import { inputHeader, processSpec } from "./Program.ts"
import { type Report, Registry } from "./Registry.ts"
import { endReport, liveReport, reportRetry } from "./Reports.ts"
import { inputSession, outputSession } from "./Sessions.ts"
import { SequenceStore } from "../sequence/SequenceStore.ts"
import { isTopicName, Topic } from "../topic/Topic.ts"

/**
 * Tunables of the entity.
 *
 * @since 0.3.0
 */
export interface Options {
  /** Graceful stop granted to a process when its shard leaves this runner. Default 5 s. */
  readonly handoverTimeoutMs?: number
  /** Where sequence packages are unpacked (shared by the runners of a machine). */
  readonly sequenceCacheDir?: string
  /** How long a sequence's kill handlers may run before SIGKILL. Default 1 s. */
  readonly killGraceMs?: number
}

/** One process of this activation. */
interface Run {
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
  /** A sequence's process (in-child runner: handlers, health, data channels). */
  readonly sequence: boolean
  /** The health a sequence last reported. */
  health: { readonly healthy: boolean } | undefined
  /** Called when a sequence asks to be kept alive during a stop. */
  readonly keptAlive: Set<() => void>
  /**
   * The process (pid) the input's Content-Type header went to: a restart policy starts new
   * processes in the same run, and each reads its own header.
   */
  inputHeaderTo: number | undefined
}

/** Repeats a topic publish whose answer was lost to a shard move (the topic drops the repeat). */
const retryTopic = <A, E, R>(publish: Effect.Effect<A, E, R>) =>
  publish.pipe(Effect.retry({ times: 20, schedule: Schedule.spaced("100 millis") }))

/** Where a run's data goes in and comes out: a sequence's data channels, a command's stdio. */
const dataOf = (run: Run) =>
  run.sequence
    ? { input: run.handle.input, output: run.handle.output }
    : { input: run.handle.stdin, output: run.handle.stdout }

const isEvent = (value: unknown): value is { readonly event: string; readonly data?: unknown } =>
  typeof value === "object" && value !== null && typeof (value as { event?: unknown }).event === "string"

/**
 * The entity's behaviour, to be provided with a runner's cluster layer, a ProcessManager, a
 * Registry and a DataPort.
 *
 * @since 0.3.0
 */
export const layer = (options: Options = {}) =>
  Instance.toLayer(
    Effect.gen(function*() {
      const address = yield* Entity.CurrentAddress
      const runnerAddress = yield* Entity.CurrentRunnerAddress
      const context = yield* Effect.context<Sharding | Entity.CurrentAddress>()
      const latch = yield* Effect.serviceOption(Entity.KeepAliveLatch)
      const registry = yield* Registry
      const processes = yield* ProcessManager
      const fence = yield* Effect.serviceOption(Fence)
      const sharding = yield* Sharding
      if (Option.isSome(fence)) yield* Effect.addFinalizer(() => Effect.sync(() => fence.value.unguard(address.entityId)))
      const dataPort = yield* DataPort
      const scope = yield* Effect.scope
      const id = address.entityId
      const runner = `${runnerAddress.host}:${runnerAddress.port}`
      const lock = Semaphore.makeUnsafe(1)
      const handoverTimeoutMs = options.handoverTimeoutMs ?? 5000
      const killGraceMs = options.killGraceMs ?? 1000
      const cacheDir = options.sequenceCacheDir ?? Path.join(Os.tmpdir(), "shardhub-sequences")
      const sequences = yield* SequenceStore
      const topics = yield* Topic.client

      const keepAlive = (enabled: boolean) =>
        Option.isNone(latch)
          ? Effect.void
          : Entity.keepAlive(enabled).pipe(Effect.provideContext(Context.add(context, Entity.KeepAliveLatch, latch.value)))

      /** The record as this runner knows it; `undefined` while there is none. */
      let info: InstanceInfo | undefined = yield* registry.get(id).pipe(
        Effect.map((found): InstanceInfo | undefined => found),
        Effect.catchTag("InstanceNotFound", () => Effect.succeed(undefined)),
        Effect.orDie
      )
      let current: Run | undefined
      let releasing = false

      /**
       * Writes a report with `epoch`, again until the store takes it (reports are epoch-fenced
       * and idempotent), and keeps the stored record; `false` when another runner took the
       * instance over since.
       */
      const store = (epoch: number, update: Report) =>
        registry.report(id, epoch, update).pipe(
          Effect.tapError((error) => Effect.logWarning(`instance ${id}: report not stored yet, retrying: ${error.message}`)),
          Effect.retry({ schedule: reportRetry }),
          Effect.map(Option.match({
            onNone: () => false,
            onSome: (stored) => {
              info = stored
              return true
            }
          }))
        )

      /** Writes a report of the run; a fenced-out run kills its process. */
      const report = (run: Run, update: Report) =>
        Effect.flatMap(store(run.epoch, update), (landed) =>
          landed ? Effect.void : Effect.logWarning(`instance ${id}: another runner took it over; killing this copy`).pipe(
            Effect.andThen(run.handle.kill),
            Effect.ignore
          ))

      /** Reports every status change of the run's process until it ended. */
      const watch = (run: Run) =>
        run.handle.changes.pipe(
          Stream.runForEach((status) =>
            Effect.gen(function*() {
              if (isTerminal(status)) {
                if (releasing) return
                yield* report(run, endReport(status, run.stopRequested))
                yield* PubSub.publish(run.events, undefined)
                yield* keepAlive(false)
                if (info !== undefined) yield* Deferred.succeed(run.settled, info)
                return
              }
              const restarts = run.restartsBefore + (yield* run.handle.info).restarts
              const update = liveReport(status, restarts)
              if (update !== undefined && (update.status !== info?.status || update.pid !== info?.pid)) {
                yield* report(run, update)
              }
            })
          )
        )

      /** Collects the events the run's process emits. */
      const collect = (run: Run, messages: Stream.Stream<ChannelEvent>) =>
        messages.pipe(
          Stream.runForEach((message) => {
            if (message._tag !== "Message") return Effect.void
            if (isControl(message.value, "health")) {
              run.health = { healthy: message.value["healthy"] !== false }
              return Effect.void
            }
            if (isControl(message.value, "keepAlive")) {
              for (const kept of run.keptAlive) kept()
              return Effect.void
            }
            if (isControl(message.value, "topics")) {
              // Topics the sequence declares (STH's requires / provides).
              const { contentType, provides, requires } = message.value
              const name = (value: unknown) => typeof value === "string" && isTopicName(value) ? value : undefined
              return connectTopics(run, {
                ...(name(requires) === undefined ? {} : { input: name(requires)! }),
                ...(name(provides) === undefined ? {} : { output: name(provides)! }),
                ...(typeof contentType === "string" ? { contentType } : {})
              })
            }
            if (!isEvent(message.value)) return Effect.void
            const event: InstanceEvent = { name: message.value.event, data: message.value.data ?? null }
            return run.last.set(event) ? PubSub.publish(run.events, event) : Effect.void
          })
        )

      /**
       * Starts the process of `record` (claimed with its epoch) and waits until it runs. The
       * keep-alive (a persisted message) is written while the process spawns, and withdrawn if
       * it could not be started. Uninterruptible: a shard that moves meanwhile waits for the
       * process to be known here, so that the release stops it (never an untracked copy).
       */
      const launch = (record: InstanceInfo, restartsBefore: number) =>
        Effect.all([spawnRun(record, restartsBefore), keepAlive(true)], { concurrency: 2 }).pipe(
          Effect.map(([started]) => started),
          Effect.tapError(() => keepAlive(false)),
          Effect.uninterruptible
        )

      /**
       * Connects the run to its topics: its output is published (from its first byte), its
       * input is fed from a subscription. Both end with the run's scope.
       */
      const connectTopics = (run: Run, wiring: NonNullable<InstanceSpec["topics"]>) =>
        Effect.gen(function*() {
          const contentType = wiring.contentType ?? "application/octet-stream"
          const output = wiring.output
          if (output !== undefined) {
            const producer = `${id}/${run.epoch}`
            let seq = 0
            const bytes = dataOf(run).output()
            yield* Effect.forkIn(
              bytes.pipe(
                Stream.runForEachArray((chunks) =>
                  retryTopic(topics(output).Publish({ producer, seq: seq++, contentType, chunks: [...chunks] }))
                ),
                Effect.catchCause((cause) => Effect.logWarning(`instance ${id}: publishing to topic ${output} stopped`, cause))
              ),
              scope
            )
          }
          const input = wiring.input
          if (input !== undefined) {
            // Each process of the run (a restart policy starts new ones) reads the topic through
            // a subscription of its own, which ends with it (it would otherwise hold chunks
            // nobody reads); while none runs, the topic keeps what is published for the next subscriber.
            const feed = (pid: number) =>
              Effect.suspend(() => {
                run.inputHeaderTo = pid
                const bytes = topics(input).Subscribe()
                return (run.sequence ? Stream.concat(Stream.make(inputHeader(contentType)), bytes) : bytes).pipe(
                  Stream.run(dataOf(run).input({ end: false }))
                )
              }).pipe(
                // The process ended: the next one (if any) gets its own feed.
                Effect.catchTag("StdinError", () => Effect.void),
                Effect.catchCause((cause) => Effect.logWarning(`instance ${id}: reading topic ${input} stopped`, cause))
              )
            yield* Effect.forkIn(
              run.handle.changes.pipe(
                Stream.map((status) => "pid" in status ? status.pid : undefined),
                Stream.changes,
                Stream.switchMap((pid) => pid === undefined ? Stream.empty : Stream.fromEffectDrain(feed(pid))),
                Stream.runDrain
              ),
              scope
            )
          }
        })

      /** Records that the process of `record` could not be started. */
      const startFailed = (record: InstanceInfo, reason: string) =>
        Effect.asVoid(store(record.epoch, { desired: "stopped", status: "crashed", reason, endedAt: Date.now() }))

      const spawnRun = (record: InstanceInfo, restartsBefore: number) =>
        Effect.gen(function*() {
          const spec = yield* processSpec(id, record.spec, cacheDir).pipe(
            Effect.provideService(SequenceStore, sequences),
            Effect.tapError((error) => startFailed(record, error.message))
          )
          const handle = yield* processes.spawn(spec).pipe(
            Effect.catchTag("SpawnError", (error) =>
              startFailed(record, `${error.reason}: ${error.message}`).pipe(
                Effect.andThen(Effect.fail(new StartFailed({ id, reason: error.reason, message: error.message })))
              ))
          )
          const run: Run = {
            handle,
            epoch: record.epoch,
            restartsBefore,
            stopRequested: false,
            settled: Deferred.makeUnsafe(),
            events: yield* PubSub.sliding<InstanceEvent | undefined>(64),
            last: LastEvents.make(),
            sequence: record.spec.program._tag === "Sequence",
            health: undefined,
            keptAlive: new Set(),
            inputHeaderTo: undefined
          }
          current = run
          info = record
          // After a freeze by the fence, the process continues only while this runner holds its shard.
          if (Option.isSome(fence)) fence.value.guard(id, handle.id, () => sharding.hasShardId(address.shardId))
          const messages = yield* handle.messages.pipe(Scope.provide(scope))
          yield* Effect.forkIn(collect(run, messages), scope)
          const started = yield* handle.info
          yield* report(run, {
            status: "running",
            pid: started.pid ?? null,
            startedAt: started.startedAt ?? null,
            restarts: restartsBefore,
            endedAt: null,
            exitCode: null,
            signal: null,
            reason: null,
            crashLog: []
          })
          yield* Effect.forkIn(watch(run), scope)
          if (record.spec.topics !== undefined) yield* connectTopics(run, record.spec.topics)
          if (run.sequence) {
            // A sequence can take input once its runner loaded the package.
            yield* handle.ready.pipe(
              Effect.catchTag("NotReady", () =>
                Effect.flatMap(handle.wait, (terminal) =>
                  Effect.fail(
                    new StartFailed({
                      id,
                      reason: terminal._tag === "Exited" ? `exit code ${terminal.code}` : terminal._tag,
                      message: terminal.crashLog.join("\n") || "the sequence ended before it was ready"
                    })
                  )))
            )
          }
          return info!
        })

      // A shard that leaves this runner takes the process with it, gracefully; the record keeps
      // wanting it to run, for the next owner.
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          const run = current
          if (run === undefined) return Effect.void
          return Effect.gen(function*() {
            if (isTerminal((yield* run.handle.info).status)) {
              yield* processes.remove(run.handle.id, { keepLogs: true }).pipe(Effect.ignore)
              return
            }
            releasing = true
            yield* run.handle.terminate(handoverTimeoutMs).pipe(Effect.ignore)
            yield* registry.report(id, run.epoch, { status: "starting", pid: null }).pipe(Effect.ignore)
            yield* processes.remove(run.handle.id, { keepLogs: true }).pipe(Effect.ignore)
          })
        })
      )

      // Activation after a failover or handover: bring the process back.
      if (info !== undefined && info.desired === "running" && !isEnded(info.status)) {
        const claimed = yield* registry.claim(id, runner).pipe(Effect.orDie)
        yield* launch(claimed, claimed.restarts + (claimed.startedAt === undefined ? 0 : 1)).pipe(
          Effect.catchCause((cause) => Effect.logWarning(`instance ${id} could not be restarted`, cause))
        )
      }

      const known = Effect.suspend(() => info === undefined ? Effect.fail(new InstanceNotFound({ id })) : Effect.succeed(info))
      const live = Effect.flatMap(known, (record) =>
        current === undefined
          ? Effect.fail(new NotRunning({ id, status: record.status }))
          : Effect.succeed(current))

      /** Ends the current process with `end` (terminate or kill) and answers with the final record. */
      const finish = (end: (run: Run) => Effect.Effect<Terminal, KillError>) =>
        Effect.gen(function*() {
          const record = yield* known
          const run = current
          if (run === undefined || isEnded(record.status)) {
            if (record.desired === "running") info = yield* registry.setDesired(id, "stopped")
            return info ?? record
          }
          run.stopRequested = true
          yield* report(run, { desired: "stopped" })
          // A signal refused (EPERM) is not a process that outlived SIGKILL: say which it was.
          yield* end(run).pipe(
            Effect.mapError((error) =>
              new StopTimeout({ id, message: `the process of instance ${id} could not be signalled: ${error.message}` })
            )
          )
          return yield* Deferred.await(run.settled)
        })

      /**
       * Asks a sequence to stop, letting it call `keepAlive` from its stop handlers: then the
       * stop is called off and the instance keeps running. Otherwise it ends within `timeoutMs`
       * (SIGKILL at the deadline).
       */
      const stopOrKeep = (timeoutMs: number) =>
        Effect.gen(function*() {
          const run = current
          const record = yield* known
          if (run === undefined || isEnded(record.status)) return yield* finish((run) => run.handle.terminate(timeoutMs))
          const kept = Deferred.makeUnsafe<void>()
          const onKeepAlive = () => Deferred.doneUnsafe(kept, Effect.void)
          run.keptAlive.add(onKeepAlive)
          run.stopRequested = true
          const outcome = yield* run.handle.send({ $shardhub: "stop", timeoutMs, canCallKeepalive: true }).pipe(
            Effect.andThen(Effect.raceFirst(Effect.as(Deferred.await(kept), "kept" as const), Effect.as(run.handle.wait, "ended" as const))),
            Effect.timeoutOrElse({ duration: timeoutMs, orElse: () => Effect.succeed("late" as const) }),
            Effect.catchTag("WriteMessageError", () => Effect.succeed("late" as const)),
            Effect.ensuring(Effect.sync(() => run.keptAlive.delete(onKeepAlive)))
          )
          if (outcome === "kept") {
            run.stopRequested = false
            return info!
          }
          return yield* finish((run) => run.handle.kill)
        })

      /** A sequence's kill handlers get `killGraceMs` before SIGKILL; a command is SIGKILLed. */
      const kill = (run: Run) =>
        run.sequence
          ? run.handle.send({ $shardhub: "kill" }).pipe(
            Effect.andThen(run.handle.wait),
            Effect.timeout(killGraceMs),
            Effect.ignore,
            Effect.andThen(run.handle.kill)
          )
          : run.handle.kill

      const nextEvent = (run: Run, name: string) =>
        Effect.scoped(Effect.gen(function*() {
          const subscription = yield* PubSub.subscribe(run.events)
          while (true) {
            const event = yield* PubSub.take(subscription)
            if (event === undefined) return yield* new NotRunning({ id, status: "ended" })
            if (event.name === name) return event
          }
        }))

      return Instance.of({
        Start: ({ payload }) =>
          lock.withPermit(Effect.gen(function*() {
            const created = yield* registry.create(id, payload.spec, payload.startKey, runner)
            if (!created.created) return info ?? created.info
            return yield* launch(created.info, 0)
          })),
        Stop: ({ payload }) =>
          payload.canCallKeepalive && current?.sequence === true
            ? stopOrKeep(payload.timeoutMs)
            : finish((run) => run.handle.terminate(payload.timeoutMs)),
        Kill: ({ payload }) =>
          finish(kill).pipe(
            Effect.tap((record) => {
              if (!payload.removeImmediately) return Effect.void
              const run = current
              current = undefined
              info = undefined
              return Effect.all([
                registry.remove(id),
                run === undefined ? Effect.void : processes.remove(run.handle.id).pipe(Effect.ignore)
              ], { discard: true }).pipe(Effect.as(record))
            })
          ),
        Info: () => known,
        GetHealth: () =>
          Effect.gen(function*() {
            const record = yield* known
            const run = current
            const stats = run === undefined ? Option.none() : yield* run.handle.stats
            return {
              id,
              status: record.status,
              healthy: record.status === "running" && run?.health?.healthy !== false,
              ...(record.runner === undefined ? {} : { runner: record.runner }),
              ...(record.pid === undefined ? {} : { pid: record.pid }),
              ...(record.startedAt === undefined || isEnded(record.status) ? {} : { uptimeMs: Date.now() - record.startedAt }),
              restarts: record.restarts,
              ...(Option.isSome(stats) ? { stats: stats.value } : {})
            }
          }),
        Stats: () =>
          Effect.flatMap(live, (run) =>
            Effect.flatMap(run.handle.stats, (stats) =>
              Option.isSome(stats) ? Effect.succeed(stats.value) : Effect.fail(new NotRunning({ id, status: info!.status })))),
        SendEvent: ({ payload }) =>
          Effect.flatMap(live, (run) =>
            run.handle.send({ event: payload.name, data: payload.data }).pipe(
              Effect.mapError(() => new NotRunning({ id, status: info!.status }))
            )),
        NextEvent: ({ payload }) => Effect.flatMap(live, (run) => nextEvent(run, payload.name)),
        LastEvent: ({ payload }) =>
          Effect.flatMap(live, (run) => {
            const last = run.last.get(payload.name)
            return last === undefined ? nextEvent(run, payload.name) : Effect.succeed(last)
          }),
        Events: ({ payload }) =>
          Stream.unwrap(Effect.map(live, (run) =>
            Stream.fromPubSub(run.events).pipe(
              Stream.takeWhile((event): event is InstanceEvent => event !== undefined),
              Stream.filter((event) => payload.name === undefined || event.name === payload.name)
            ))),
        // An ended instance's log outlives its process here (for the retention time): its files.
        Logs: ({ payload }) =>
          Stream.unwrap(Effect.map(known, () =>
            current === undefined ? processes.pastLogs(id, payload.query) : current.handle.logs(payload.query))),
        Open: ({ payload }) =>
          Effect.gen(function*() {
            const run = yield* live
            const handle = run.handle
            const replay = { replay: payload.replay ?? true }
            // A sequence's input and output are its data channels; stdio stays its own.
            const { input, output } = dataOf(run)
            const { pid } = yield* handle.info
            const header = () => {
              if (!run.sequence || pid === undefined || run.inputHeaderTo === pid) return undefined
              run.inputHeaderTo = pid
              return inputHeader(payload.contentType ?? "application/octet-stream")
            }
            switch (payload.stream) {
              case "stdin":
                return yield* dataPort.offer(inputSession(handle.stdin, payload.end ?? true, true))
              case "input":
                return yield* dataPort.offer(inputSession(input, payload.end ?? true, true, header))
              case "stdout":
                return yield* dataPort.offer(outputSession(handle.stdout(replay)))
              case "output":
                return yield* dataPort.offer(outputSession(output(replay)))
              case "stderr":
                return yield* dataPort.offer(outputSession(handle.stderr(replay)))
              case "inout":
                // The output first: it is subscribed before any input can make output.
                return yield* dataPort.offer((socket) =>
                  Effect.all([
                    outputSession(output(replay))(socket),
                    inputSession(input, payload.end ?? true, false, header)(socket)
                  ], { concurrency: 2, discard: true })
                )
            }
          })
      })
    }),
    { concurrency: "unbounded" }
  )
