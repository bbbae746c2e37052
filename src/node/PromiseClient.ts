/**
 * The Promise facade for Node code that does not use Effect, with the surface and names of
 * Scramjet's `@scramjet/api-client` `InstanceClient` (seed 001): `stop`, `kill`, `getHealth`,
 * `getInfo`, `getStream`, `sendStream`, `sendInput`, `sendStdin`, `inout`, `getLogStream`,
 * `sendEvent`, `getNextEvent`, `getEvent`, `getEventStream`.
 *
 * ```ts
 * const host = await HostClient.connect()          // DATABASE_URL, else the embedded store
 * const instance = await host.startInstance({ program: { _tag: "Command", command: "cat" } })
 * ;(await instance.getStream("output")).pipe(process.stdout)
 * await instance.sendInput("hello\n")
 * await instance.stop(5000, false)
 * await host.close()
 * ```
 *
 * The `HostClient` also has the sequence and topic calls of `@scramjet/api-client`'s
 * (`sendSequence` → a `SequenceClient` to `start`, `listSequences`, `deleteSequence`,
 * `sendNamedData`, `getNamedData`, `getTopics`, `createTopic`, `deleteTopic`).
 *
 * Failed calls reject with shardhub's tagged errors (`InstanceNotFound`, `CallTimeout`, …),
 * which also carry the `code` and `status` STH's client gives the same failure (`NOT_FOUND`,
 * 404); streams emit them as `error` events. Every call has a timeout (see `connect`'s options).
 *
 * @since 0.3.0
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import { ConfigProvider, Effect, Layer, ManagedRuntime, Stream } from "effect"
import type { Readable } from "node:stream"
import { type InstanceEvent, type InstanceInfo, type InstanceSpec, type InstanceStatus, liveInstancesOf, liveStatuses } from "../instance/InstanceSpec.ts"
import type { SequenceInfo } from "../sequence/SequenceStore.ts"
import * as Client from "./Client.ts"
import { httpStatus, sthCode } from "../base/HttpStatus.ts"
import * as Host from "../client/HostClient.ts"
import * as Instances from "../client/InstanceClient.ts"

type Services = Host.HostClient | Instances.InstanceClient

/**
 * What `sendStream` and friends accept: a Node stream, any (async) iterable of chunks, or a string.
 *
 * @since 0.3.0
 */
export type Input = Readable | AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string> | string | Uint8Array

/**
 * @since 0.3.0
 */
export interface ConnectOptions extends Instances.Options {
  /** Settings to use instead of the process environment (`DATABASE_URL`, `SHARDHUB_HOME`, …). */
  readonly env?: Readonly<Record<string, string>>
}

const encoder = new TextEncoder()
const toBytes = (chunk: Uint8Array | string) => typeof chunk === "string" ? encoder.encode(chunk) : chunk

const inputStream = (input: Input): Stream.Stream<Uint8Array, Error> => {
  if (typeof input === "string" || input instanceof Uint8Array) return Stream.make(toBytes(input))
  if (Symbol.asyncIterator in input) {
    return Stream.fromAsyncIterable(input as AsyncIterable<Uint8Array | string>, (error) => error as Error).pipe(
      Stream.map(toBytes)
    )
  }
  return Stream.fromIterable(input as Iterable<Uint8Array | string>).pipe(Stream.map(toBytes))
}

/** A tagged error with the `code` and `status` of STH's client added. */
const withCode = (error: unknown): unknown => {
  if (typeof error !== "object" || error === null || typeof (error as { _tag?: unknown })._tag !== "string") return error
  const status = httpStatus(error)
  try {
    Object.assign(error, { code: sthCode(status), status })
  } catch {
    // a frozen error stays as it is
  }
  return error
}

const ndjson = <A>(stream: Stream.Stream<A, unknown>) =>
  NodeStream.toReadableNever(stream.pipe(Stream.map((item) => `${JSON.stringify(item)}\n`)))

/**
 * One instance, seed 001's `InstanceClient`.
 *
 * @since 0.3.0
 */
export class InstanceClient {
  readonly id: string
  readonly #host: HostClient

  private constructor(id: string, host: HostClient) {
    this.id = id
    this.#host = host
  }

  static from(id: string, host: HostClient): InstanceClient {
    return new InstanceClient(id, host)
  }

  #run<A>(f: (client: Instances.InstanceClient["Service"]) => Effect.Effect<A, unknown>): Promise<A> {
    return this.#host.run(Effect.flatMap(Instances.InstanceClient, f))
  }

  /** Stops gracefully; SIGKILL after `timeout` ms. Resolves with the final record. */
  stop(timeout: number, canCallKeepalive: boolean): Promise<InstanceInfo> {
    return this.#run((c) => c.stop(this.id, { timeoutMs: timeout, canCallKeepalive }))
  }

  /** Kills it; `removeImmediately` also forgets its record. */
  kill(opts: { readonly removeImmediately?: boolean } = {}): Promise<InstanceInfo> {
    return this.#run((c) => c.kill(this.id, opts))
  }

  getHealth() {
    return this.#run((c) => c.health(this.id))
  }

  getInfo(): Promise<InstanceInfo> {
    return this.#run((c) => c.info(this.id))
  }

  /** An output stream: retained output first, then live, until the process ends. */
  getStream(streamId: Instances.OutputStream | "log"): Promise<Readable> {
    if (streamId === "log") return this.getLogStream()
    return this.#run((c) => Effect.succeed(NodeStream.toReadableNever(c.output(this.id, streamId))))
  }

  /** Writes to stdin (`input` and `stdin` are the same for a command); closes it unless `end: false`. */
  sendStream(
    streamId: Instances.InputStream,
    stream: Input,
    _requestInit?: unknown,
    options: { readonly end?: boolean } = {}
  ): Promise<void> {
    return this.#run((c) => c.input(this.id, inputStream(stream), { stream: streamId, ...options }))
  }

  /** Writes to the input; `type` is the content type a sequence decodes it by (STH's option). */
  sendInput(stream: Input, _requestInit?: unknown, options: { readonly end?: boolean; readonly type?: string } = {}): Promise<void> {
    return this.#run((c) =>
      c.input(this.id, inputStream(stream), {
        stream: "input",
        ...(options.end === undefined ? {} : { end: options.end }),
        ...(options.type === undefined ? {} : { contentType: options.type })
      }))
  }

  sendStdin(stream: Input): Promise<void> {
    return this.sendStream("stdin", stream)
  }

  /** Writes `stream` to the input and reads the output, on one connection. */
  inout(stream: Input, _requestInit?: unknown, options: { readonly end?: boolean } = {}): Promise<Readable> {
    return this.#run((c) => Effect.succeed(NodeStream.toReadableNever(c.inout(this.id, inputStream(stream), options))))
  }

  /** Log lines as NDJSON (`{seq, time, stream, text}`), following the log. */
  getLogStream(): Promise<Readable> {
    return this.#run((c) => Effect.succeed(ndjson(c.logs(this.id, { follow: true }))))
  }

  sendEvent(eventName: string, message: unknown): Promise<void> {
    return this.#run((c) => c.sendEvent(this.id, eventName, message))
  }

  /** The data of the next `eventName` event. */
  getNextEvent(eventName: string): Promise<unknown> {
    return this.#run((c) => Effect.map(c.nextEvent(this.id, eventName), (event: InstanceEvent) => event.data))
  }

  /** The data of the last `eventName` event, waiting for one if there was none yet. */
  getEvent(eventName: string): Promise<unknown> {
    return this.#run((c) => Effect.map(c.lastEvent(this.id, eventName), (event: InstanceEvent) => event.data))
  }

  /** The data of every `eventName` event from now on, as NDJSON. */
  getEventStream(eventName: string): Promise<Readable> {
    return this.#run((c) => Effect.succeed(ndjson(c.events(this.id, eventName).pipe(Stream.map((event) => event.data)))))
  }
}

/**
 * One stored sequence, as `@scramjet/api-client`'s `SequenceClient`.
 *
 * @since 0.6.0
 */
export class SequenceClient {
  readonly id: string
  readonly #host: HostClient

  constructor(id: string, host: HostClient) {
    this.id = id
    this.#host = host
  }

  /** Starts an instance (`instanceId` names it) and resolves once it can take input. */
  async start(payload: {
    readonly appConfig?: Readonly<Record<string, unknown>>
    readonly args?: ReadonlyArray<unknown>
    readonly instanceId?: string
  } = {}): Promise<InstanceClient> {
    const { instanceId, ...start } = payload
    const info = await this.#host.withHost((h) => h.startSequence(this.id, { ...start, ...(instanceId === undefined ? {} : { id: instanceId }) }))
    return InstanceClient.from(info.id, this.#host)
  }

  /** The ids of its instances that have not ended. */
  listInstances(): Promise<ReadonlyArray<string>> {
    return this.#host.withHost((h) => Effect.map(h.list({ statuses: liveStatuses }), (live) => liveInstancesOf(live, this.id)))
  }

  getInstance(id: string): InstanceClient {
    return InstanceClient.from(id, this.#host)
  }

  getInfo(): Promise<SequenceInfo> {
    return this.#host.withHost((h) => h.getSequence(this.id))
  }

  /** Replaces its package, keeping its id; refused while instances of it run. */
  async overwrite(archive: Input): Promise<SequenceClient> {
    await this.#host.withHost((h) => h.replaceSequence(this.id, inputStream(archive)))
    return this
  }
}

/**
 * A client-only participant of the cluster. `close()` it when done.
 *
 * @since 0.3.0
 */
export class HostClient {
  readonly #runtime: ManagedRuntime.ManagedRuntime<Services, unknown>

  private constructor(runtime: ManagedRuntime.ManagedRuntime<Services, unknown>) {
    this.#runtime = runtime
  }

  /** Joins the cluster found through `options.env` or the process environment. */
  static async connect(options: ConnectOptions = {}): Promise<HostClient> {
    const layer = Client.layerFromEnv(options)
    const runtime = ManagedRuntime.make(
      options.env === undefined
        ? layer
        : layer.pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { ...options.env } }))))
    )
    await runtime.runPromise(Effect.void)
    return new HostClient(runtime)
  }

  /** @internal */
  run<A>(effect: Effect.Effect<A, unknown, Services>): Promise<A> {
    return this.#runtime.runPromise(effect).catch((error: unknown) => Promise.reject(withCode(error)))
  }

  /** @internal */
  withHost<A>(f: (host: Host.HostClient["Service"]) => Effect.Effect<A, unknown>): Promise<A> {
    return this.run(Effect.flatMap(Host.HostClient, f))
  }

  /** Checks and stores a sequence package (tar.gz or tar); resolves with its client. */
  async sendSequence(archive: Input, options: { readonly id?: string } = {}): Promise<SequenceClient> {
    const info = await this.withHost((h) => h.sendSequence(inputStream(archive), options))
    return new SequenceClient(info.id, this)
  }

  getSequenceClient(id: string): SequenceClient {
    return new SequenceClient(id, this)
  }

  listSequences(): Promise<ReadonlyArray<SequenceInfo>> {
    return this.withHost((h) => h.listSequences)
  }

  getSequence(id: string): Promise<SequenceInfo> {
    return this.withHost((h) => h.getSequence(id))
  }

  /** Refused while instances of it run, unless `force`. */
  async deleteSequence(id: string, options: { readonly force?: boolean } = {}): Promise<{ readonly id: string }> {
    await this.withHost((h) => h.deleteSequence(id, options))
    return { id }
  }

  /**
   * Publishes `stream` to a topic (STH's `sendNamedData`); resolves once all of it is published.
   * `end` ends the topic's stream for its consumers after it.
   */
  sendNamedData(topic: string, stream: Input, _requestInit?: unknown, contentType?: string, end?: boolean): Promise<void> {
    return this.withHost((h) =>
      h.publish(topic, inputStream(stream), {
        ...(contentType === undefined ? {} : { contentType }),
        ...(end === undefined ? {} : { end })
      }))
  }

  /** What is published to a topic from now on (STH's `getNamedData`). */
  getNamedData(topic: string): Promise<Readable> {
    return this.withHost((h) => Effect.succeed(NodeStream.toReadableNever(h.subscribe(topic))))
  }

  getTopics(): Promise<ReadonlyArray<{ readonly name: string; readonly contentType: string }>> {
    return this.withHost((h) => h.listTopics)
  }

  createTopic(id: string, contentType?: string): Promise<{ readonly id: string; readonly contentType: string }> {
    return this.withHost((h) => Effect.map(h.createTopic(id, contentType), (topic) => ({ id: topic.name, contentType: topic.contentType })))
  }

  async deleteTopic(id: string): Promise<{ readonly message: string }> {
    await this.withHost((h) => h.deleteTopic(id))
    return { message: `Topic ${id} removed` }
  }

  listInstances(statuses?: ReadonlyArray<InstanceStatus>): Promise<ReadonlyArray<InstanceInfo>> {
    return this.withHost((h) => h.list(statuses === undefined ? {} : { statuses }))
  }

  /** Starts an instance and resolves once its process runs. */
  async startInstance(spec: InstanceSpec, options: { readonly id?: string } = {}): Promise<InstanceClient> {
    const info = await this.withHost((h) => h.start(spec, options))
    return InstanceClient.from(info.id, this)
  }

  getInstanceInfo(id: string): Promise<InstanceInfo> {
    return this.withHost((h) => h.get(id))
  }

  getInstanceClient(id: string): InstanceClient {
    return InstanceClient.from(id, this)
  }

  close(): Promise<void> {
    return this.#runtime.dispose()
  }
}
