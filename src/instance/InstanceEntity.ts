/**
 * What an `Instance` entity does on the runner that holds its shard: it owns the instance's OS
 * process through the ProcessManager and keeps the registry record up to date.
 *
 * - **Activation.** The record is read. If the instance should be running (desired `running`,
 *   not ended), this runner {@link Registry.claim}s it (the epoch fences out the previous owner)
 *   and starts its process: this is how instances come back after their runner died or handed
 *   their shard over.
 * - **Residency.** While it has a process the entity holds a keep-alive (not persisted, see
 *   `liveness/KeepAlive`): it never passivates. The next owner of its shard brings it up there
 *   from the registry (`Activator`), which also re-activates an instance whose entity is gone
 *   while its shard stays here.
 * - **Release.** When the shard goes (rebalance, graceful shutdown, lost lock) the process is
 *   terminated gracefully before the shard lock is given up, and the record is left wanting to
 *   run, for the next owner. A SIGKILLed runner's processes are killed by its reaper at once,
 *   long before its lock expires. So two processes of one instance never overlap.
 * - **One run per process.** Restarts by the restart policy happen inside the ProcessManager;
 *   every status change is reported to the registry with the claim's epoch. A `Restart` request
 *   ends the process and starts a new run under the same claim.
 * - **Mailbox.** Start, Stop and Restart take turns (Effect's serialized mailbox); reads,
 *   streams and Kill are `Rpc.fork`ed beside them, so a kill overtakes a slow stop. What differs
 *   between a command and a sequence is the incarnation's `Program`; the process itself is its
 *   `Incarnation`.
 * - **Schedules.** A scheduled instance (`spec.schedule`) starts no process on Start: it asks
 *   for a `Tick` (a persisted message to itself, delivered when due) and is `scheduled`. A tick
 *   asks for the next one first, then runs the program unless a run is still going. The next
 *   tick is counted from now, so ticks missed while the cluster was down come as one; the
 *   record keeps the next tick's time, and a tick due at another time (a stray of a tick handled
 *   twice) is dropped. A run's end puts it back to `scheduled` while the schedule is on.
 * - **One owner of the state.** What the activation knows — the record, the current run, whether
 *   the shard is being released, how many kills it took — is one {@link Activation} value in a
 *   `Ref`, read afresh after every wait: a handler never assumes what it read before a wait still
 *   holds (a Kill that removes the instance may have landed meanwhile; a restart overtaken by a
 *   kill does not start again).
 *
 * @since 0.3.0
 */
import { Entity } from "effect/cluster"
import { Sharding } from "effect/cluster/Sharding"
import { Rpc } from "effect/rpc"
import { Cron, Deferred, Effect, Option, PubSub, Ref, Schedule, Scope, Stream } from "effect"
import * as Os from "node:os"
import * as Path from "node:path"
import type { KillError } from "../process/ProcessErrors.ts"
import { isTerminal, type Terminal } from "../process/ProcessStatus.ts"
import { ProcessManager } from "../process/ProcessManager.ts"
import { DataPort } from "./DataPort.ts"
import { Instance, TickAt } from "./Instance.ts"
import { Activator } from "./Activator.ts"
import { Fence } from "../liveness/Fence.ts"
import { Handover } from "../liveness/Handover.ts"
import * as KeepAlive from "../liveness/KeepAlive.ts"
import { InstanceNotFound, InvalidSpec, NotRunning, StartFailed, SignalFailed } from "./InstanceErrors.ts"
import { type InstanceInfo, type InstanceSpec, isEnded } from "./InstanceSpec.ts"
import { processSpec } from "./Program.ts"
import { groupOf, instanceIdOf } from "./Placement.ts"
import { PlacementGroups } from "./PlacementGroups.ts"
import { requirementKey } from "../base/Labels.ts"
import { type Report, Registry } from "./Registry.ts"
import { endReport, liveReport, reportRetry } from "./Reports.ts"
import * as Direct from "./Direct.ts"
import { sessionOf } from "./Sessions.ts"
import * as Incarnations from "./Incarnation.ts"
import type { Incarnation } from "./Incarnation.ts"
import { SequenceStore } from "../sequence/SequenceStore.ts"
import { Topic } from "../topic/Topic.ts"
import * as TopicRegistry from "../topic/TopicRegistry.ts"
import * as Durable from "../topic/Durable.ts"
import * as InstanceMetrics from "../metrics/InstanceMetrics.ts"
import * as Wiring from "./Wiring.ts"

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

/** What an activation knows; see the module's "One owner of the state". */
interface Activation {
  /** The record as this runner knows it; `undefined` while there is none (or once removed). */
  readonly info: InstanceInfo | undefined
  /** The process run of this activation, while there is one. */
  readonly current: Incarnation | undefined
  /** The shard is leaving: the end of the process is not reported (the next owner runs it). */
  readonly releasing: boolean
  /** Kills asked for so far: a restart that sees it change while it waits does not start again. */
  readonly kills: number
}

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
      const keepAlive = yield* KeepAlive.make
      const registry = yield* Registry
      const processes = yield* ProcessManager
      const fence = yield* Effect.serviceOption(Fence)
      const handover = yield* Effect.serviceOption(Handover)
      const sharding = yield* Sharding
      // `<id>` or, for a placed instance, `<id>@<group>` (see `Placement`).
      const id = instanceIdOf(address.entityId)
      yield* (yield* Activator).resident(address.entityId)
      if (Option.isSome(fence)) yield* Effect.addFinalizer(() => Effect.sync(() => fence.value.unguard(id)))
      const dataPort = yield* DataPort
      const scope = yield* Effect.scope
      const runner = `${runnerAddress.host}:${runnerAddress.port}`
      const handoverTimeoutMs = options.handoverTimeoutMs ?? 5000
      const killGraceMs = options.killGraceMs ?? 1000
      const cacheDir = options.sequenceCacheDir ?? Path.join(Os.tmpdir(), "shardhub-sequences")
      const sequences = yield* SequenceStore
      const topics = yield* Topic.client
      const knownTopics = yield* TopicRegistry.KnownTopics
      const durableTopics = yield* Durable.DurableTopics
      const self = (yield* Instance.client)(address.entityId)
      // The requirement of this entity's placement group: a record that names another is not
      // this entity's (a stale route), and it never acts on it.
      const requirement = yield* (yield* PlacementGroups).requirementOf(groupOf(address.entityId)).pipe(Effect.orDie)
      const placedHere = (spec: InstanceSpec) => requirementKey(spec.placement?.on) === requirement

      const initial: InstanceInfo | undefined = yield* registry.get(id).pipe(
        Effect.map((found): InstanceInfo | undefined => placedHere(found.spec) ? found : undefined),
        Effect.catchTag("InstanceNotFound", () => Effect.succeed(undefined)),
        Effect.orDie
      )
      const state = yield* Ref.make<Activation>({ info: initial, current: undefined, releasing: false, kills: 0 })
      const now = Ref.get(state)
      const change = (f: (activation: Activation) => Partial<Activation>) =>
        Ref.update(state, (activation) => ({ ...activation, ...f(activation) }))
      const setInfo = (info: InstanceInfo | undefined) => change(() => ({ info }))

      /**
       * Writes a report with `epoch`, again until the store takes it (reports are epoch-fenced
       * and idempotent), and keeps the stored record; `false` when another runner took the
       * instance over since.
       */
      const store = (epoch: number, update: Report) =>
        registry.report(id, epoch, update).pipe(
          Effect.tapError((error) => Effect.logWarning(`instance ${id}: report not stored yet, retrying: ${error.message}`)),
          Effect.retry({ schedule: reportRetry }),
          Effect.flatMap(Option.match({
            onNone: () => Effect.succeed(false),
            onSome: (stored) => Effect.as(setInfo(stored), true)
          }))
        )

      /** Writes a report of the run; a fenced-out run kills its process. */
      const report = (run: Incarnation, update: Report) =>
        Effect.flatMap(store(run.epoch, update), (landed) =>
          landed ? Effect.void : Effect.logWarning(`instance ${id}: another runner took it over; killing this copy`).pipe(
            Effect.andThen(run.handle.kill),
            Effect.ignore
          ))

      /** Reports every status change of the run's process until it ended. */
      const watch = (run: Incarnation, readyStored: Deferred.Deferred<void>) => {
        let restartsSeen = run.restartsBefore
        return run.handle.changes.pipe(
          Stream.runForEach((status) =>
            Effect.gen(function*() {
              if (isTerminal(status)) {
                if ((yield* now).releasing) return yield* Deferred.succeed(readyStored, undefined)
                const ending = endReport(status, run.stopRequested)
                // A scheduled instance whose schedule is on waits for its next tick.
                const { info: record } = yield* now
                const waiting = record?.spec.schedule !== undefined && record.desired === "running"
                yield* report(run, waiting ? { ...ending, desired: "running", status: "scheduled" } : ending)
                if (ending.status === "stopped" || ending.status === "crashed") yield* InstanceMetrics.ended(ending.status)
                yield* PubSub.publish(run.events, undefined)
                yield* keepAlive(false)
                const { info } = yield* now
                if (info !== undefined) yield* Deferred.succeed(run.settled, info)
                return yield* Deferred.succeed(readyStored, undefined)
              }
              const restarts = run.restartsBefore + (yield* run.handle.info).restarts
              yield* InstanceMetrics.restarted(restarts - restartsSeen)
              restartsSeen = restarts
              const update = liveReport(status, restarts)
              const { info } = yield* now
              if (
                update !== undefined &&
                (update.status !== info?.status || update.pid !== info?.pid || (update.reason !== undefined && update.reason !== info?.reason))
              ) {
                yield* report(run, update)
              }
              if (status._tag === "Ready") yield* Deferred.succeed(readyStored, undefined)
            })
          )
        )
      }

      /**
       * Starts the process of `record` (claimed with its epoch) and waits until it runs. The
       * keep-alive is taken while the process spawns, and let go if it could not be started.
       * See `spawnRun` for what an interruption (the shard leaving) may cut short.
       */
      const launch = (record: InstanceInfo, restartsBefore: number, continueLog = false) =>
        Effect.all([spawnRun(record, restartsBefore, continueLog), keepAlive(true)], { concurrency: 2 }).pipe(
          InstanceMetrics.timedStart,
          Effect.withSpan("shardhub.instance.launch", { attributes: { "shardhub.instance": id, "shardhub.epoch": record.epoch } }),
          Effect.map(([started]) => started),
          Effect.tapError(() => keepAlive(false))
        )

      /** Connects the run to its topics, for as long as the activation lasts. */
      const connectTopics = (run: Incarnation, wiring: NonNullable<InstanceSpec["topics"]>) =>
        Wiring.connect({ topics, known: knownTopics, durable: durableTopics }, {
          id,
          producer: `${id}/${run.epoch}`,
          output: run.handle[run.program.outputName]({ replay: true }),
          input: run.handle[run.program.inputName]({ end: false }),
          changes: run.handle.changes,
          header: (pid, contentType) => Incarnations.headerFor(run, pid, contentType),
          acked: () => run.acked,
          resetAcked: () => {
            run.acked = undefined
          }
        }, wiring, scope)

      /** Records that the process of `record` could not be started. */
      const startFailed = (record: InstanceInfo, reason: string) =>
        Effect.asVoid(store(record.epoch, { desired: "stopped", status: "crashed", reason, endedAt: Date.now() }))

      /**
       * Asks for the next tick of a scheduled instance (a persisted message, delivered when it
       * is due: missed while the cluster was down, it comes when it is back), then keeps its
       * time on record with `update`. The tick is sent first: a tick due at another time than
       * the record's is a stray (from a handler that ran twice) and is dropped.
       */
      const arm = (record: InstanceInfo, cron: string, update: Report = {}) =>
        Effect.gen(function*() {
          const at = Cron.next(Cron.parseUnsafe(cron), new Date()).getTime()
          yield* self.Tick(new TickAt({ at }), { discard: true }).pipe(
            Effect.tapError((error) => Effect.logWarning(`instance ${id}: next tick not stored yet, retrying: ${String(error)}`)),
            Effect.retry({ schedule: reportRetry }),
            Effect.orDie
          )
          yield* store(record.epoch, { ...update, nextTickAt: at })
        })

      /**
       * Spawns the process of `record` and makes it known here, uninterruptibly: a shard that
       * moves meanwhile waits until the release can stop it (never an untracked copy). From then
       * on the release takes care of the process, so the rest — its report, its topics, the wait
       * for `running` on record — is cut short by a release: a release never waits for the store
       * (which may be what is failing) nor for a process the fence holds stopped.
       */
      const spawnRun = (record: InstanceInfo, restartsBefore: number, continueLog: boolean) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(spawnKnown(record, restartsBefore, continueLog), (run) => restore(runStarted(run, record, restartsBefore)))
        )

      /** Spawns the process of `record` and makes it the activation's current run. */
      const spawnKnown = (record: InstanceInfo, restartsBefore: number, continueLog: boolean) =>
        Effect.gen(function*() {
          const spec = yield* processSpec(id, record.spec, cacheDir, record.epoch).pipe(
            Effect.map((spec) => continueLog ? { ...spec, continueLog } : spec),
            Effect.provideService(SequenceStore, sequences),
            Effect.tapError((error) => startFailed(record, error.message))
          )
          const handle = yield* processes.spawn(spec).pipe(
            Effect.catchTag("SpawnError", (error) =>
              startFailed(record, `${error.reason}: ${error.message}`).pipe(
                Effect.andThen(Effect.fail(new StartFailed({ id, reason: error.reason, message: error.message })))
              ))
          )
          const run = yield* Incarnations.make(handle, record.spec, record.epoch, restartsBefore)
          yield* change(() => ({ current: run, info: record }))
          // After a freeze by the fence, the process continues only while this runner holds its shard.
          if (Option.isSome(fence)) fence.value.guard(id, handle.id, String(address.shardId), () => sharding.hasShardId(address.shardId))
          return run
        })

      /** Reports the run `running` (or `starting` until it is ready) and connects it. */
      const runStarted = (run: Incarnation, record: InstanceInfo, restartsBefore: number) =>
        Effect.gen(function*() {
          const handle = run.handle
          const messages = yield* handle.messages.pipe(Scope.provide(scope))
          // Its epoch is current while the record has no later one: one indexed read, at most every
          // 100 ms (a program that asks in a loop gets the last answer in between).
          let checked: { readonly at: number; readonly current: boolean } | undefined
          const current = Effect.suspend(() =>
            checked !== undefined && performance.now() - checked.at < 100
              ? Effect.succeed(checked.current)
              : registry.get(id).pipe(
                Effect.map((info) => info.epoch === run.epoch),
                Effect.orElseSucceed(() => false),
                Effect.tap((answer) => Effect.sync(() => (checked = { at: performance.now(), current: answer })))
              )
          )
          yield* Effect.forkIn(Incarnations.collect(id, run, messages, (wiring) => connectTopics(run, wiring), current), scope)
          const started = yield* handle.info
          const ready = started.status._tag === "Ready"
          yield* report(run, {
            status: ready ? "running" : "starting",
            pid: started.pid ?? null,
            startedAt: started.startedAt ?? null,
            restarts: restartsBefore,
            endedAt: null,
            exitCode: null,
            signal: null,
            reason: null,
            crashLog: []
          })
          const readyStored = yield* Deferred.make<void>()
          yield* Effect.forkIn(watch(run, readyStored), scope)
          if (record.spec.topics !== undefined) yield* connectTopics(run, record.spec.topics)
          yield* run.program.started(id, handle)
          // A start that waited for readiness (a sequence's) answers once `running` is on record.
          if (!ready && (yield* handle.info).status._tag === "Ready") yield* Deferred.await(readyStored)
          return (yield* now).info ?? record
        })

      /** Waits until the instance runs on another runner (or no longer wants to run anywhere). */
      const runsElsewhere = registry.get(id).pipe(
        Effect.map((info) =>
          info.desired !== "running" || isEnded(info.status) || info.status === "scheduled" ||
          (info.runner !== runner && info.status === "running")
        ),
        Effect.catchTag("InstanceNotFound", () => Effect.succeed(true)),
        Effect.orElseSucceed(() => false),
        Effect.repeat({ until: (done) => done, schedule: Schedule.spaced("50 millis") })
      )

      // A shard that leaves this runner takes the process with it, gracefully; the record keeps
      // wanting it to run, for the next owner. On a drained runner the stop waits for its turn
      // and the turn lasts until the instance runs on its new runner (see `Handover`).
      const handOver = Effect.gen(function*() {
        const run = (yield* now).current
        if (run === undefined) return
        if (isTerminal((yield* run.handle.info).status)) {
          yield* processes.remove(run.handle.id, { keepLogs: true }).pipe(Effect.ignore)
          return
        }
        yield* change(() => ({ releasing: true }))
        // A process the fence holds stopped cannot act on a graceful stop: it goes at once.
        const stoppedByFence = Option.isSome(fence) && fence.value.stopped(id)
        yield* (stoppedByFence ? run.handle.kill : run.handle.terminate(handoverTimeoutMs)).pipe(Effect.ignore)
        yield* registry.report(id, run.epoch, { status: "starting", pid: null }).pipe(Effect.ignore)
        yield* processes.remove(run.handle.id, { keepLogs: true }).pipe(Effect.ignore)
      })
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          const { current, info } = yield* now
          if (current === undefined || Option.isNone(handover) || (Option.isSome(fence) && fence.value.stopped(id))) {
            return yield* handOver
          }
          const readiness = info?.spec.readiness
          const patience = (readiness === undefined || readiness._tag === "Immediate" ? 0 : readiness.timeoutMs) + 30_000
          yield* handover.value.pace(address.shardId.toString(), handOver, runsElsewhere.pipe(Effect.timeout(patience), Effect.ignore))
        })
      )

      // Activation after a failover or handover: bring the process back.
      if (initial !== undefined && initial.desired === "running" && !isEnded(initial.status) && initial.status !== "scheduled") {
        const claimed = yield* registry.claim(id, runner).pipe(Effect.orDie)
        yield* launch(claimed, claimed.restarts + (claimed.startedAt === undefined ? 0 : 1)).pipe(
          Effect.andThen(InstanceMetrics.tookOver),
          Effect.catchCause((cause) => Effect.logWarning(`instance ${id} could not be restarted`, cause))
        )
      }

      const known = Effect.flatMap(now, ({ info }) => info === undefined ? Effect.fail(new InstanceNotFound({ id })) : Effect.succeed(info))
      /** Why no process serves a request, as the record stands: removed, or not running. */
      const refusal = (info: InstanceInfo | undefined) =>
        info === undefined ? new InstanceNotFound({ id }) : new NotRunning({ id, status: info.status })
      const live = Effect.flatMap(now, ({ info, current }): Effect.Effect<Incarnation, InstanceNotFound | NotRunning> =>
        info !== undefined && current !== undefined ? Effect.succeed(current) : Effect.fail(refusal(info)))
      /** Why the process cannot serve a request after all, as the state is now: ended, or removed. */
      const notRunning = Effect.flatMap(now, ({ info }) => Effect.fail(refusal(info)))

      const signalFailed = (error: KillError) =>
        new SignalFailed({ id, message: `the process of instance ${id} could not be signalled: ${error.message}` })

      /** Ends `run` with `end` (terminate or kill) and answers once its end was reported. */
      const endRun = (run: Incarnation, end: (run: Incarnation) => Effect.Effect<Terminal, KillError>) =>
        Effect.suspend(() => {
          run.stopRequested = true
          return end(run).pipe(Effect.mapError(signalFailed), Effect.andThen(Deferred.await(run.settled)))
        })

      /** Ends the current process with `end` (terminate or kill) and answers with the final record. */
      const finish = (end: (run: Incarnation) => Effect.Effect<Terminal, KillError>) =>
        Effect.gen(function*() {
          const record = yield* known
          const run = (yield* now).current
          if (record.status === "scheduled") {
            // No run is going: the schedule is turned off.
            if (record.desired === "running") yield* store(record.epoch, { desired: "stopped", status: "stopped", nextTickAt: null })
            return yield* known
          }
          if (run === undefined || isEnded(record.status)) {
            if (record.desired !== "running") return record
            const stopped = yield* registry.setDesired(id, "stopped")
            yield* setInfo(stopped)
            return stopped
          }
          // Stopping from here on: an end while the report is retried is reported as stopped.
          run.stopRequested = true
          // A schedule is turned off with it (its next tick is no longer on record).
          yield* report(run, { desired: "stopped", ...(record.spec.schedule === undefined ? {} : { nextTickAt: null }) })
          return yield* endRun(run, end)
        })

      /**
       * Stops the running process (gracefully, SIGKILL after `timeoutMs`) and starts a new one
       * under the same id, its log continued; an ended instance is started again here.
       */
      const restart = (timeoutMs: number) =>
        Effect.gen(function*() {
          const record = yield* known
          const { current: previous, kills } = yield* now
          if (previous !== undefined && !isEnded(record.status)) yield* endRun(previous, (run) => run.handle.terminate(timeoutMs))
          // A kill overtook the restart while it waited: the kill wins, nothing starts again.
          const after = yield* now
          if (after.info === undefined) return yield* new InstanceNotFound({ id })
          if (after.kills !== kills) return after.info
          if (previous !== undefined) yield* processes.remove(previous.handle.id, { keepLogs: true }).pipe(Effect.ignore)
          yield* change(() => ({ current: undefined }))
          const wanted = after.info.desired === "running" ? after.info : yield* registry.setDesired(id, "running")
          yield* setInfo(wanted)
          // Ended before this activation (another runner ran it): claim it for this runner.
          const target = previous === undefined ? yield* registry.claim(id, runner) : wanted
          return yield* launch(target, target.restarts + 1, true)
        })

      /**
       * Asks a sequence to stop, letting it call `keepAlive` from its stop handlers: then the
       * stop is called off and the instance keeps running. Otherwise it ends within `timeoutMs`
       * (SIGKILL at the deadline).
       */
      const stopOrKeep = (timeoutMs: number) =>
        Effect.gen(function*() {
          const record = yield* known
          const run = (yield* now).current
          if (run === undefined || isEnded(record.status)) return yield* finish((run) => run.handle.terminate(timeoutMs))
          run.stopRequested = true
          if ((yield* Incarnations.askToStop(run, timeoutMs)) === "kept") {
            run.stopRequested = false
            return yield* known
          }
          return yield* finish((run) => run.handle.kill)
        })

      return Instance.of({
        // Start and Stop take turns (the entity's mailbox serves one message at a time); everything
        // else runs beside them (`Rpc.fork`), so that a kill overtakes a slow stop.
        Start: ({ payload }) =>
          Effect.gen(function*() {
            if (!placedHere(payload.spec)) {
              return yield* new InvalidSpec({ message: `instance ${id}: its placement is not the one of this entity (${address.entityId})` })
            }
            const created = yield* registry.create(id, payload.spec, payload.startKey, runner)
            if (!created.created) return (yield* now).info ?? created.info
            const schedule = payload.spec.schedule
            if (schedule === undefined) return yield* launch(created.info, 0)
            yield* setInfo(created.info)
            yield* arm(created.info, schedule.cron, { status: "scheduled" })
            return (yield* now).info ?? created.info
          }),
        Stop: ({ payload }) =>
          Effect.flatMap(now, ({ current }) =>
            payload.canCallKeepalive && current?.program.canKeepAlive === true
              ? stopOrKeep(payload.timeoutMs)
              : finish((run) => run.handle.terminate(payload.timeoutMs))),
        Restart: ({ payload }) =>
          Effect.flatMap(restart(payload.timeoutMs), (record) =>
            // A schedule that was off is on again.
            record.spec.schedule === undefined || record.nextTickAt !== undefined
              ? Effect.succeed(record)
              : Effect.andThen(arm(record, record.spec.schedule.cron), known)),
        // A tick takes its turn with Start and Stop: a run it starts is known before the next one.
        Tick: ({ payload }) =>
          Effect.gen(function*() {
            const { info } = yield* now
            if (info === undefined || info.desired !== "running" || info.spec.schedule === undefined) return
            if (info.nextTickAt !== undefined && info.nextTickAt !== payload.at) return
            yield* arm(info, info.spec.schedule.cron)
            const status = (yield* known).status
            if (status !== "scheduled" && !isEnded(status)) {
              return yield* Effect.logInfo(`instance ${id}: tick skipped, the last run is still ${status}`)
            }
            yield* restart(0)
          }).pipe(Effect.catchCause((cause) => Effect.logWarning(`instance ${id}: tick failed`, cause))),
        // Their delivery activated the entity, which started what should run.
        Wake: () => Effect.void,
        Activate: () => Effect.void,
        Kill: ({ payload }) =>
          Rpc.fork(change(({ kills }) => ({ kills: kills + 1 })).pipe(
            Effect.andThen(finish((run) => run.program.kill(run.handle, killGraceMs))),
            Effect.tap((record) => {
              if (!payload.removeImmediately) return Effect.void
              return Ref.getAndUpdate(state, (activation) => ({ ...activation, current: undefined, info: undefined })).pipe(
                Effect.flatMap(({ current: run }) =>
                  Effect.all([
                    registry.remove(id),
                    run === undefined ? Effect.void : processes.remove(run.handle.id).pipe(Effect.ignore)
                  ], { discard: true })
                ),
                Effect.as(record)
              )
            })
          )),
        Info: () => Rpc.fork(known),
        GetHealth: () =>
          Rpc.fork(Effect.gen(function*() {
            const record = yield* known
            const run = (yield* now).current
            return Incarnations.health(record, run, run === undefined ? Option.none() : yield* run.handle.stats)
          })),
        Stats: () =>
          Rpc.fork(Effect.flatMap(live, (run) =>
            Effect.flatMap(run.handle.stats, (stats) => Option.isSome(stats) ? Effect.succeed(stats.value) : notRunning))),
        SendEvent: ({ payload }) =>
          Rpc.fork(Effect.flatMap(live, (run) =>
            run.handle.send({ event: payload.name, data: payload.data }).pipe(Effect.catch(() => notRunning)))),
        NextEvent: ({ payload }) => Rpc.fork(Effect.flatMap(live, (run) => Incarnations.nextEvent(run, id, payload.name))),
        LastEvent: ({ payload }) =>
          Rpc.fork(Effect.flatMap(live, (run) => {
            const last = run.last.get(payload.name)
            return last === undefined ? Incarnations.nextEvent(run, id, payload.name) : Effect.succeed(last)
          })),
        Events: ({ payload }) => Rpc.fork(Stream.unwrap(Effect.map(live, (run) => Incarnations.events(run, payload.name)))),
        // An ended instance's log outlives its process here (for the retention time): its files.
        Logs: ({ payload }) =>
          Rpc.fork(Stream.unwrap(Effect.flatMap(known, () =>
            Effect.map(now, ({ current }) => current === undefined ? processes.pastLogs(id, payload.query) : current.handle.logs(payload.query))))),
        Open: ({ payload }) =>
          Rpc.fork(Effect.gen(function*() {
            const run = yield* live
            const { pid } = yield* run.handle.info
            // An input has one reader, the process: it goes direct unless asked not to.
            const wanted = payload.direct ?? payload.stream === "input"
            const direct = wanted && dataPort.direct ? yield* Direct.offer(run, pid, payload) : undefined
            return direct ?? (yield* dataPort.offer(sessionOf(run, pid, payload)))
          }))
      })
    })
  )
