/**
 * `HostClient`: the cluster-wide view of instances — list them, start one, read one's record —
 * and of sequences — send a package, list, read, delete, start one.
 *
 * `list` and `get` read the registry in the cluster store directly (they work even while an
 * instance's runner is down); `start` asks the `Instance` entity, which lands on the runner that
 * owns the new id's shard.
 *
 * @since 0.3.0
 */
import type { Sharding } from "effect/cluster/Sharding"
import { Cause, Context, Duration, Effect, Layer, Result, Schema, Stream } from "effect"
import type { AlreadyProcessingMessage, EntityNotAssignedToRunner, MailboxFull, PersistenceError } from "effect/cluster/ClusterError"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Crypto from "node:crypto"
import * as RunnerList from "./RunnerList.ts"
import { Instance } from "../instance/Instance.ts"
import {
  type InstanceAlreadyExists,
  type InstanceNotFound,
  InvalidSpec,
  type RegistryError,
  type StartFailed,
  StartUnconfirmed
} from "../instance/InstanceErrors.ts"
import { InstanceId, type InstanceInfo, InstanceSpec, type InstanceStatus, liveStatuses } from "../instance/InstanceSpec.ts"
import { Registry } from "../instance/Registry.ts"
import type { SequenceStart } from "../sequence/Launch.ts"
import type { PackageError } from "../sequence/Package.ts"
import {
  type BundleInfo,
  type SequenceAlreadyExists,
  type SequenceInfo,
  type SequenceInUse,
  type SequenceNotFound,
  SequenceStore,
  type SequenceStoreError
} from "../sequence/SequenceStore.ts"
import { invalidName, isTopicName, Topic, type TopicDescription, TopicError } from "../topic/Topic.ts"
import * as TopicRegistry from "../topic/TopicRegistry.ts"
import * as Durable from "../topic/Durable.ts"
import * as Drain from "./Drain.ts"
import { InstanceRoutes } from "./Routes.ts"
import { requirementKey } from "../base/Labels.ts"
import { defaultGroup } from "../instance/Placement.ts"
import { type Options, retryMoved } from "./InstanceClient.ts"

const isInstanceId = Schema.is(InstanceId)
const validSpec = Schema.decodeUnknownResult(InstanceSpec)


const storeDown = (error: { readonly message: string }) =>
  new TopicError({ topic: "*", reason: "StoreUnavailable", message: error.message })

/** The topics the specs of `instances` name, with their content types. */
const topicsOf = (instances: ReadonlyArray<InstanceInfo>) => {
  const topics = new Map<string, string>()
  for (const info of instances) {
    const declared = info.spec.topics
    if (declared === undefined) continue
    for (const topic of [declared.input, declared.output]) {
      if (topic !== undefined) topics.set(topic, declared.contentType ?? "application/octet-stream")
    }
  }
  return topics
}

/** What every call to an entity may fail with besides its own errors: the cluster moving or busy. */
type EntityError = AlreadyProcessingMessage | EntityNotAssignedToRunner | MailboxFull | PersistenceError

/**
 * The cluster as a whole: instances (list, start, records), runners, topics and sequences.
 * What one instance does is `InstanceClient`'s.
 *
 * @since 0.8.0
 */
export interface HostClientService {
  /** Every instance in the cluster, newest first; optionally only those in `statuses`. */
  readonly list: (filter?: { readonly statuses?: ReadonlyArray<InstanceStatus> }) => Effect.Effect<ReadonlyArray<InstanceInfo>, RegistryError>
  /** The record of one instance. */
  readonly get: (id: string) => Effect.Effect<InstanceInfo, InstanceNotFound | RegistryError>
  /**
   * Every registered runner: its address, whether the cluster marks it healthy, its last
   * heartbeat's age, the shards it holds and the instances it runs.
   */
  readonly runners: Effect.Effect<ReadonlyArray<RunnerList.RunnerWithInstances>, SqlError | RegistryError>
  /**
   * Drains the runner at `address` (its instances move `parallel` at a time; it takes nothing
   * new), and follows its progress until it holds no instance and no shard.
   */
  readonly drain: (address: string, options: { readonly parallel: number }) => Effect.Effect<
    Stream.Stream<Drain.DrainProgress, Drain.DrainError | RegistryError>,
    Drain.DrainError
  >
  /** Ends the drain of the runner at `address`. */
  readonly undrain: (address: string) => Effect.Effect<void, Drain.DrainError>
  /**
   * Starts an instance of `spec` (with a new UUID unless `id` is given) and answers once its
   * process runs. Safe to retry: the call carries one start key, so a re-delivered start never
   * runs a second process.
   */
  readonly start: (
    spec: InstanceSpec,
    start?: { readonly id?: string; readonly timeoutMs?: number }
  ) => Effect.Effect<InstanceInfo, InstanceAlreadyExists | InvalidSpec | StartFailed | StartUnconfirmed>
  /**
   * Publishes `bytes` to a topic (each chunk once, in order); ends when they are published.
   * With `end`, their end also ends the stream of the topic's consumers.
   */
  readonly publish: <E, R>(
    topic: string,
    bytes: Stream.Stream<Uint8Array, E, R>,
    publish?: { readonly contentType?: string; readonly end?: boolean }
  ) => Effect.Effect<void, EntityError | TopicError | E, R>
  /** Every chunk published to a topic from now on (for the first consumer, what waited too). */
  readonly subscribe: (topic: string) => Stream.Stream<Uint8Array, EntityError | TopicError>
  /** A topic's content type, its consumers, and the chunks waiting for a first consumer. */
  readonly describeTopic: (topic: string) => Effect.Effect<TopicDescription, EntityError | TopicError>
  /**
   * Every topic the cluster knows of: created, published to, or wired to an instance (the
   * topics of live instances' specs too), by name.
   */
  readonly listTopics: Effect.Effect<ReadonlyArray<{ readonly name: string; readonly contentType: string }>, TopicError>
  /** Creates a topic (STH's `POST /topics`); fails if it is known already. */
  readonly createTopic: (
    topic: string,
    contentType?: string,
    options?: { readonly durable?: boolean }
  ) => Effect.Effect<TopicRegistry.TopicRecord, TopicError>
  /** Forgets a topic; refused while a live instance is wired to it. */
  readonly deleteTopic: (topic: string) => Effect.Effect<void, TopicError>
  /**
   * Checks and stores a sequence package (tar.gz or tar), given whole or as a stream (which
   * is never held in memory whole); any runner can then start it.
   */
  readonly sendSequence: <E = never>(
    archive: Uint8Array | Stream.Stream<Uint8Array, E>,
    send?: { readonly id?: string }
  ) => Effect.Effect<SequenceInfo, PackageError | SequenceAlreadyExists | SequenceStoreError | E>
  readonly listSequences: Effect.Effect<ReadonlyArray<SequenceInfo>, SequenceStoreError>
  /**
   * Checks and stores a bundle (a tar.gz or tar of any directory) for commands that run in it
   * (`program.bundle`: its hash): whichever runner runs them unpacks it.
   */
  readonly sendBundle: <E = never>(
    archive: Uint8Array | Stream.Stream<Uint8Array, E>
  ) => Effect.Effect<BundleInfo, PackageError | SequenceStoreError | E>
  readonly getSequence: (id: string) => Effect.Effect<SequenceInfo, SequenceNotFound | SequenceStoreError>
  /** Refused while instances of it run, unless `force`. */
  readonly deleteSequence: (id: string, remove?: { readonly force?: boolean }) => Effect.Effect<void, SequenceNotFound | SequenceInUse | SequenceStoreError>
  /** Replaces a sequence's package, keeping its id; refused while instances of it run. */
  readonly replaceSequence: <E = never>(
    id: string,
    archive: Uint8Array | Stream.Stream<Uint8Array, E>
  ) => Effect.Effect<SequenceInfo, PackageError | SequenceNotFound | SequenceInUse | SequenceStoreError | E>
  /**
   * Starts an instance of a stored sequence and answers once it can take input (its runner
   * loaded the package).
   */
  readonly startSequence: (
    sequenceId: string,
    options?: SequenceStart & Omit<InstanceSpec, "program"> & { readonly id?: string; readonly timeoutMs?: number }
  ) => Effect.Effect<InstanceInfo, InstanceAlreadyExists | InvalidSpec | StartFailed | StartUnconfirmed | SequenceNotFound | SequenceStoreError>
}

/**
 * @since 0.3.0
 */
export class HostClient extends Context.Service<HostClient, HostClientService>()("shardhub/HostClient") {}

/**
 * @since 0.3.0
 */
export const make = (options: Options = {}) =>
  Effect.gen(function*() {
    const clients = yield* Instance.client
    const routes = yield* InstanceRoutes
    const registry = yield* Registry
    const sequences = yield* SequenceStore
    const topics = yield* Topic.client
    const knownTopics = yield* TopicRegistry.KnownTopics
    const durableTopics = yield* Durable.DurableTopics
    // Whether a topic is durable, kept a few seconds: a subscription that needs no store read
    // is sent at once, in the order it was asked for (the first takes what waited).
    const durability = new Map<string, { readonly durable: boolean; readonly at: number }>()
    const isDurable = (topic: string) =>
      Effect.suspend(() => {
        const known = durability.get(topic)
        if (known !== undefined && Date.now() - known.at < 5_000) return Effect.succeed(known.durable)
        return Effect.tap(durableTopics.isDurable(topic), (durable) =>
          Effect.sync(() => {
            if (durability.size >= 10_000) durability.clear()
            durability.set(topic, { durable, at: Date.now() })
          }))
      })
    const sql = yield* SqlClient
    const timeoutMs = options.timeoutMs ?? 10_000
    const start = (spec: InstanceSpec, start: { readonly id?: string; readonly timeoutMs?: number } = {}) => {
      const id = start.id ?? Crypto.randomUUID()
      if (!isInstanceId(id)) {
        return Effect.fail(new InvalidSpec({ message: `invalid instance id ${JSON.stringify(id)}: use 1-128 letters, digits, '-', '_' or '.'` }))
      }
      // A spec the types let through but the schema does not (from JavaScript, a cast) is named
      // here, not lost in the request's encoding.
      const checked = validSpec(spec)
      if (Result.isFailure(checked)) return Effect.fail(new InvalidSpec({ message: `invalid spec: ${checked.failure.message}` }))
      const ms = start.timeoutMs ?? timeoutMs
      // One start key for every attempt: a repeat finds the instance it started.
      const startKey = Crypto.randomUUID()
      // A lost answer (none in time, the store or the runner out of reach): call the start off,
      // unless it got registered meanwhile (then answer the record if it runs, or name the id).
      // A start never fails and runs anyway.
      const unanswered = (reason: string) =>
        registry.cancelStart(id, spec, startKey).pipe(
          Effect.matchEffect({
            // The store out of reach too: nothing is known, so the id is named.
            onFailure: () => Effect.fail(new StartUnconfirmed({ id, reason, outcome: "unconfirmed" })),
            onSuccess: (found) =>
              found === undefined
                ? Effect.fail(new StartUnconfirmed({ id, reason, outcome: "cancelled" }))
                : found.sameStart && found.info.status === "running"
                ? Effect.succeed(found.info)
                : Effect.fail(new StartUnconfirmed({ id, reason, outcome: "unconfirmed" }))
          })
        )
      // The start, sent to the entity that owns it.
      const send = (entityId: string) =>
        retryMoved(Effect.suspend(() => clients(entityId).Start({ spec, startKey }))).pipe(
          Effect.withSpan("shardhub.start", { attributes: { "shardhub.instance": id } }),
          // A defect on the way (the cluster's own storage out of reach, say) says nothing of the
          // outcome either.
          Effect.catchDefect((defect) => unanswered(`failed (${defect instanceof Error ? defect.message || defect.name : String(defect)})`)),
          Effect.timeoutOrElse({ duration: Duration.millis(ms), orElse: () => unanswered(`got no answer within ${ms} ms`) }),
          // The runner's own answers are final; anything else leaves the outcome open.
          Effect.catchIf(
            (error) => !(error._tag === "InvalidSpec" || error._tag === "InstanceAlreadyExists" || error._tag === "StartFailed" ||
              error._tag === "StartUnconfirmed"),
            (error) => unanswered(`failed (${error.message})`)
          )
        )
      // A placement no live runner meets: the record waits as `pending`, and a persisted wake-up
      // waits in the store for the first runner that meets it to take the instance's shard.
      const pending = (entityId: string, requirement: string) =>
        registry.create(id, spec, startKey, undefined, `no runner has ${requirement}`).pipe(
          Effect.tap(({ created }) =>
            created
              ? clients(entityId).Wake(undefined, { discard: true }).pipe(
                Effect.catchCause((cause) =>
                  registry.endPending(id, { remove: true }).pipe(
                    Effect.ignore,
                    Effect.andThen(Effect.fail(new StartUnconfirmed({ id, reason: `could not queue its start: ${Cause.pretty(cause).split("\n")[0]}`, outcome: "cancelled" })))
                  ))
              )
              : Effect.void
          ),
          Effect.map(({ info }) => info)
        )
      // Nothing was sent yet: a store out of reach calls the start off.
      const notSent = (error: { readonly message: string }) =>
        new StartUnconfirmed({ id, reason: `failed (${error.message})`, outcome: "cancelled" })
      return Effect.flatMap(routes.forSpec(id, spec).pipe(Effect.mapError(notSent)), ({ entityId, group }) =>
        group === defaultGroup
          ? send(entityId)
          : Effect.flatMap(
            Effect.provideService(RunnerList.serving(group), SqlClient, sql).pipe(Effect.mapError(notSent)),
            (served) => served ? send(entityId) : Effect.mapError(pending(entityId, requirementKey(spec.placement?.on)), (error) =>
              error._tag === "RegistryError" ? notSent(error) : error)
          ))
    }
    return HostClient.of({
      /** Every instance in the cluster, newest first; optionally only those in `statuses`. */
      list: (filter?: { readonly statuses?: ReadonlyArray<InstanceStatus> }) => registry.list(filter),
      /** The record of one instance. */
      get: (id: string) => registry.get(id),
      /**
       * Every registered runner: its address, whether the cluster marks it healthy, its last
       * heartbeat's age, the shards it holds and the instances it runs.
       */
      runners: Effect.provideService(RunnerList.withInstances(registry), SqlClient, sql),
      drain: (address, options) =>
        Drain.drain(registry, address, options).pipe(
          Effect.as(Stream.provideService(Drain.follow(registry, address), SqlClient, sql)),
          Effect.provideService(SqlClient, sql)
        ),
      undrain: (address) => Effect.provideService(Drain.undrain(address), SqlClient, sql),
      /**
       * Starts an instance of `spec` (with a new UUID unless `id` is given) and answers once its
       * process runs. Safe to retry: the call carries one start key, so a re-delivered start never
       * runs a second process.
       */
      start,
      /**
       * Publishes `bytes` to a topic (each chunk once, in order); ends when they are published.
       * With `end`, their end also ends the stream of the topic's consumers.
       */
      publish: <E, R>(
        topic: string,
        bytes: Stream.Stream<Uint8Array, E, R>,
        publish: { readonly contentType?: string; readonly end?: boolean } = {}
      ) => {
        if (!isTopicName(topic)) return Effect.fail(invalidName(topic))
        const producer = Crypto.randomUUID()
        let seq = 0
        const noted = knownTopics.note(topic, publish.contentType ?? "application/octet-stream", "publish")
        // A durable topic keeps its chunks in the store (its stream has no end); another one, its entity.
        const stored = Stream.runForEachArray(bytes, (chunks) => durableTopics.append(topic, producer, seq++, chunks))
        const held = Stream.runForEachArray(bytes, (chunks) =>
          topics(topic).Publish({
            producer,
            seq: seq++,
            ...(publish.contentType === undefined ? {} : { contentType: publish.contentType }),
            chunks: [...chunks]
          })).pipe(
            // The end of these bytes ends the topic's stream for its consumers.
            Effect.andThen(Effect.suspend(() =>
              publish.end === true ? topics(topic).Publish({ producer, seq: seq++, chunks: [], end: true }) : Effect.void
            ))
          )
        return noted.pipe(
          Effect.andThen(isDurable(topic)),
          Effect.flatMap((durable): Effect.Effect<void, E | TopicError | EntityError, R> => durable ? stored : held)
        )
      },
      /**
       * Every chunk published to a topic from now on (for the first consumer, what waited too);
       * of a durable topic, from its current end.
       */
      subscribe: (topic: string) =>
        !isTopicName(topic)
          ? Stream.fail(invalidName(topic))
          : Stream.unwrap(Effect.map(isDurable(topic), (durable) =>
            durable ? durableTopics.follow(topic) : topics(topic).Subscribe())),
      /** A topic's content type, its consumers, and the chunks waiting for a first consumer. */
      describeTopic: (topic: string) => isTopicName(topic) ? topics(topic).Describe() : Effect.fail(invalidName(topic)),
      /**
       * Every topic the cluster knows of: created, published to, or wired to an instance (the
       * topics of live instances' specs too), by name.
       */
      listTopics: Effect.gen(function*() {
        const [known, live] = yield* Effect.all([knownTopics.list, Effect.mapError(registry.list({ statuses: liveStatuses }), storeDown)], {
          concurrency: 2
        })
        const listed = new Map(known.map((record) => [record.name, { name: record.name, contentType: record.contentType }]))
        for (const [name, contentType] of topicsOf(live)) if (!listed.has(name)) listed.set(name, { name, contentType })
        return [...listed.values()].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
      }),
      /** Creates a topic (STH's `POST /topics`); fails if it is known already. */
      createTopic: (topic: string, contentType = "application/octet-stream", options: { readonly durable?: boolean } = {}) =>
        knownTopics.create(topic, contentType, options),
      /** Forgets a topic; refused while a live instance is wired to it. */
      deleteTopic: (topic: string) =>
        Effect.gen(function*() {
          const users = (yield* Effect.mapError(registry.list({ statuses: liveStatuses }), storeDown))
            .filter((info) => info.spec.topics?.input === topic || info.spec.topics?.output === topic)
          if (users.length > 0) {
            return yield* new TopicError({ topic, reason: "InUse", message: `topic ${topic} is used by instances ${users.map((info) => info.id).join(", ")}` })
          }
          yield* knownTopics.remove(topic)
        }),
      /**
       * Checks and stores a sequence package (tar.gz or tar), given whole or as a stream (which
       * is never held in memory whole); any runner can then start it.
       */
      sendSequence: <E = never>(archive: Uint8Array | Stream.Stream<Uint8Array, E>, send: { readonly id?: string } = {}) =>
        sequences.add(archive instanceof Uint8Array ? Stream.make(archive) : archive, send),
      listSequences: sequences.list,
      sendBundle: <E = never>(archive: Uint8Array | Stream.Stream<Uint8Array, E>) =>
        sequences.addBundle(archive instanceof Uint8Array ? Stream.make(archive) : archive),
      getSequence: (id: string) => sequences.get(id),
      /** Refused while instances of it run, unless `force`. */
      deleteSequence: (id: string, remove: { readonly force?: boolean } = {}) => sequences.remove(id, remove),
      /** Replaces a sequence's package, keeping its id; refused while instances of it run. */
      replaceSequence: <E = never>(id: string, archive: Uint8Array | Stream.Stream<Uint8Array, E>) =>
        sequences.replace(id, archive instanceof Uint8Array ? Stream.make(archive) : archive),
      /**
       * Starts an instance of a stored sequence and answers once it can take input (its runner
       * loaded the package).
       */
      startSequence: (
        sequenceId: string,
        options: SequenceStart & Omit<InstanceSpec, "program"> & { readonly id?: string; readonly timeoutMs?: number } = {}
      ) => {
        const { appConfig, args, id, timeoutMs: ms, ...rest } = options
        return Effect.andThen(
          sequences.get(sequenceId),
          start({
            ...rest,
            program: {
              _tag: "Sequence",
              sequenceId,
              ...(args === undefined ? {} : { args }),
              ...(appConfig === undefined ? {} : { appConfig })
            }
          }, { ...(id === undefined ? {} : { id }), timeoutMs: ms ?? 30_000 })
        )
      }
    })
  })


/**
 * @since 0.3.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<HostClient, never, Sharding | Registry | SequenceStore | SqlClient | InstanceRoutes | Durable.DurableTopics | TopicRegistry.KnownTopics> =>
  Layer.effect(HostClient, make(options))
