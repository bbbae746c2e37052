/**
 * The gateway's endpoints on the cluster's clients: `HostClient` for sequences, instances and
 * topics, `InstanceClient` for one instance. The gateway is a client-only participant; every
 * answer comes from the store or the runner that owns the instance.
 *
 * @since 0.4.0
 */
import { Effect, FiberSet, Layer, Schema, Stream } from "effect"
import { HttpServerResponse } from "effect/http"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import { HttpApiBuilder } from "effect/http-api"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as Os from "node:os"
import { HostClient } from "../client/HostClient.ts"
import { type InputStream, InstanceClient, type OutputStream } from "../client/InstanceClient.ts"
import { InstanceId, type InstanceInfo, isEnded, liveInstancesOf } from "../instance/InstanceSpec.ts"
import type { LogLine } from "../process/LogStore.ts"
import { invalidName, isTopicName } from "../topic/Topic.ts"
import { Api } from "./Api.ts"
import * as Body from "./Body.ts"
import * as HubFeed from "./HubFeed.ts"
import * as Responses from "./Responses.ts"
import { nativeHandlers } from "./NativeHandlers.ts"
import { fromDomain, http, type HttpError, MethodNotAllowed, NotFound } from "./HttpErrors.ts"
import * as Sth from "./Sth.ts"
import { version } from "../base/Version.ts"



/**
 * An STH log record (`level`, `msg`, `ts`, `from`) from a log line: a sequence's logger records
 * carry their level first and come `from` "Sequence"; output lines come from their stream.
 */
const logRecord = (line: LogLine) => {
  if (line.stream === "log") {
    const space = line.text.indexOf(" ")
    return { level: line.text.slice(0, space), msg: line.text.slice(space + 1), ts: line.time, from: "Sequence", stream: line.stream }
  }
  return { level: line.stream === "stderr" ? "ERROR" : "INFO", msg: line.text, ts: line.time, from: line.stream, stream: line.stream }
}

/** An instance's limits from STH's start `limits` (memory in MB; gpu is not supported and ignored). */
const limitsOf = ({ gpu: _, memory, ...rlimits }: NonNullable<Sth.StartBody["limits"]>) => ({
  ...(memory === undefined ? {} : { memoryMb: memory }),
  ...rlimits
})


/** @since 0.4.0 */
export const hostHandlers = HttpApiBuilder.group(
  Api,
  "host",
  Effect.fn(function*(handlers) {
    const host = yield* HostClient
    const feed = yield* HubFeed.HubFeed

    /** A sequence by id, or by name (the newest of that name), like STH's start. */
    const findSequence = (idOrName: string) =>
      host.getSequence(idOrName).pipe(
        Effect.catchTag("SequenceNotFound", (notFound) =>
          Effect.flatMap(host.listSequences, (all) => {
            const named = all.find((info) => info.name === idOrName)
            return named === undefined ? Effect.fail(notFound) : Effect.succeed(named)
          }))
      )

    const liveOf = (sequenceId: string) =>
      Effect.map(host.list(), (all) => liveInstancesOf(all, sequenceId))

    return handlers
      .handle("version", () => Effect.succeed({ service: "shardhub", apiVersion: "v1", version, build: "shardhub" }))
      .handle("loadCheck", () =>
        Effect.sync(() => {
          const [avgLoad] = Os.loadavg()
          const cores = Os.availableParallelism()
          return {
            avgLoad: avgLoad!,
            currentLoad: Math.min(100, (avgLoad! / cores) * 100),
            memFree: Os.freemem(),
            memUsed: Os.totalmem() - Os.freemem(),
            fsSize: []
          }
        }))
      .handle("config", () =>
        Effect.succeed({ service: "shardhub", version, apiBase: "/api/v1", runtimeAdapter: "process", maxPackageBytes: Body.maxPackageBytes }))
      .handle("status", () =>
        http(Effect.map(host.runners, (runners) => ({
          cpm: { connected: false },
          runners: { total: runners.length, healthy: runners.filter((runner) => runner.healthy).length }
        }))))
      .handle("entities", () =>
        http(Effect.gen(function*() {
          const [sequences, instances] = yield* Effect.all([host.listSequences, host.list()], { concurrency: 2 })
          return {
            sequences: sequences.map((info) => Sth.toSequence(info, liveInstancesOf(instances, info.id))),
            instances: instances.map(Sth.toInstance)
          }
        })))
      .handleRaw("hubLog", () => Effect.succeed(Responses.ndjson(Stream.fromPubSub(feed.log))))
      .handleRaw("audit", () => Effect.succeed(Responses.ndjson(Stream.fromPubSub(feed.audit))))
      .handle("listSequences", () =>
        http(Effect.gen(function*() {
          const [sequences, instances] = yield* Effect.all([host.listSequences, host.list()], { concurrency: 2 })
          return sequences.map((info) =>
            Sth.toSequence(info, liveInstancesOf(instances, info.id))
          )
        })))
      .handleRaw("sendSequence", ({ request }) =>
        Effect.gen(function*() {
          yield* Body.streamType(request, Body.packageTypes, { required: true })
          const info = yield* http(host.sendSequence(Body.bounded(request, Body.maxPackageBytes, "the package")))
          return { id: info.id }
        }))
      .handleRaw("replaceSequence", ({ params, request }) =>
        Effect.gen(function*() {
          yield* Body.streamType(request, Body.packageTypes, { required: true })
          const info = yield* http(findSequence(params.id))
          yield* http(host.replaceSequence(info.id, Body.bounded(request, Body.maxPackageBytes, "the package")))
          return { id: info.id }
        }))
      .handle("getSequence", ({ params }) =>
        http(Effect.gen(function*() {
          const info = yield* findSequence(params.id)
          return Sth.toSequence(info, yield* liveOf(info.id))
        })))
      .handle("sequenceInstances", ({ params }) =>
        http(Effect.flatMap(findSequence(params.id), (info) => liveOf(info.id))))
      .handle("deleteSequence", ({ params, headers }) =>
        http(Effect.gen(function*() {
          const info = yield* findSequence(params.id)
          yield* host.deleteSequence(info.id, { force: headers["x-seq-kill-inst"] === "true" })
          return { id: info.id }
        })))
      .handleRaw("startSequence", ({ params, request }) =>
        Effect.gen(function*() {
          const body = yield* Body.json(request, Sth.StartBody)
          const info = yield* http(findSequence(params.id))
          const topics = {
            ...(body.inputTopic === undefined ? {} : { input: body.inputTopic }),
            ...(body.outputTopic === undefined ? {} : { output: body.outputTopic })
          }
          const started = yield* http(host.startSequence(info.id, {
            ...(body.args === undefined ? {} : { args: body.args }),
            ...(body.appConfig === undefined ? {} : { appConfig: body.appConfig }),
            ...(body.instanceId === undefined ? {} : { id: body.instanceId }),
            ...(Object.keys(topics).length === 0 ? {} : { topics }),
            ...(body.limits === undefined ? {} : { limits: limitsOf(body.limits) }),
            ...(body.user === undefined ? {} : { user: body.user }),
            ...(body.group === undefined ? {} : { group: body.group })
          }))
          return { message: `Sequence ${started.id} starting`, id: started.id }
        }))
      .handle("listInstances", () => http(Effect.map(host.list(), (all) => all.map(Sth.toInstance))))
      .handle("topics", () =>
        http(Effect.map(host.listTopics, (topics) =>
          topics.map((topic) => ({ topic: topic.name, topicName: topic.name, contentType: topic.contentType, localProvider: "shardhub" })))))
      .handleRaw("createTopic", ({ request }) =>
        Effect.gen(function*() {
          const body = yield* Body.json(request, Sth.CreateTopicBody)
          const created = yield* http(host.createTopic(body.id, body["content-type"] ?? "application/x-ndjson", { durable: body.durable === true }))
          return { id: created.name, origin: { id: "shardhub", type: "hub" }, state: "flowing", contentType: created.contentType, durable: created.durable }
        }))
      .handleRaw("deleteTopic", ({ params, request }) =>
        Effect.gen(function*() {
          yield* Body.json(request, Schema.Struct({}))
          yield* http(host.deleteTopic(params.topic))
          return { message: `Topic ${params.topic} removed` }
        }))
      .handleRaw("publish", ({ params, request }) =>
        Effect.gen(function*() {
          const contentType = yield* Body.streamType(request, topicTypes, { failure: "400" })
          // A topic lives on after a publish unless the request says `x-end-stream: true`.
          const end = request.headers["x-end-stream"] === "true"
          yield* http(host.publish(params.topic, Body.stream(request), { contentType, end }))
          return HttpServerResponse.empty({ status: 200 })
        }))
      .handleRaw("subscribe", ({ params }) =>
        isTopicName(params.topic)
          ? Effect.succeed(Responses.stream(host.subscribe(params.topic)))
          : Effect.fail(fromDomain(invalidName(params.topic))))
  })
)

const isInstanceId = Schema.is(InstanceId)

const topicTypes = ["application/x-ndjson", "text/x-ndjson", "text/plain", "application/octet-stream"]
const inputTypes = ["application/octet-stream", "text/plain", "application/x-ndjson", "text/x-ndjson"]

/** How many instances' monitoring rates the gateway keeps. */
const maxRates = 10_000

/** @since 0.4.0 */
export const instanceHandlers = HttpApiBuilder.group(
  Api,
  "instance",
  Effect.fn(function*(handlers) {
    const host = yield* HostClient
    const instances = yield* InstanceClient
    // Stops answer at once; the stop itself runs here, in the gateway's scope.
    const background = yield* FiberSet.make()

    const output = (id: string, request: HttpServerRequest, stream: OutputStream) =>
      Effect.andThen(exists(id), http(Effect.map(instances.openOutputReadable(id, stream), (bytes) => Responses.piped(request, bytes))))

    const input = (id: string, request: HttpServerRequest, stream: InputStream) =>
      Effect.gen(function*() {
        const contentType = stream === "stdin"
          ? yield* Body.streamType(request, ["application/octet-stream"])
          : yield* Body.streamType(request, inputTypes)
        const info = yield* exists(id)
        if (stream === "input" && info.spec.topics?.input !== undefined) {
          return yield* new MethodNotAllowed({
            error: `Input provided in other way: ${id} reads the topic ${info.spec.topics.input}`,
            code: "ERR_INPUT_FROM_TOPIC"
          })
        }
        const end = Body.endsStream(request)
        const send = yield* http(instances.openInputReadable(id, { stream, end, contentType }))
        // Answer at once (the client resolves on the headers); the body ends when the process
        // took every byte, or fails the response when it could not. The request's bytes go
        // from its socket to the data port's by Node's own pipe.
        return Responses.stream(
          Stream.fromEffectDrain(send(NodeHttpServerRequest.toIncomingMessage(request))) as Stream.Stream<Uint8Array, unknown>,
          "application/octet-stream"
        ).pipe(HttpServerResponse.setStatus(end ? 200 : 202))
      })

    /**
     * The instance's record from the store: 404 here for an unknown id, so garbage never wakes
     * an entity on a runner, and a stream answers 404 rather than failing after its headers.
     */
    const exists = (id: string): Effect.Effect<InstanceInfo, HttpError> =>
      isInstanceId(id)
        ? http(host.get(id))
        : Effect.fail(new NotFound({ error: `no instance with id ${JSON.stringify(String(id).slice(0, 200))}`, code: "ERR_NOT_FOUND" }))

    /** STH answers 404 for the health of an instance that has ended. */
    const ended404 = (id: string) =>
      Effect.flatMap(exists(id), (info) =>
        isEnded(info.status)
          ? Effect.fail(new NotFound({ error: `instance ${id} has ended (${info.status})`, code: "ERR_NOT_FOUND" }))
          : Effect.succeed(info))

    /** Monitoring rates set by `_monitoring_rate` (messages per second), the newest `maxRates`. */
    const rates = new Map<string, number>()

    /**
     * STH's monitoring feed of an instance: `[3001, {healthy, processId}]` at its rate, and
     * `[5001, event]` for each event, until it ends.
     */
    const monitoring = (id: string) => {
      const beats = Stream.fromEffectRepeat(
        Effect.andThen(Effect.suspend(() => Effect.sleep(1000 / (rates.get(id) ?? 1))), instances.health(id))
      ).pipe(
        Stream.takeUntil((health) => isEnded(health.status)),
        Stream.map((health) => [3001, { healthy: health.healthy, ...(health.pid === undefined ? {} : { processId: health.pid }) }] as const)
      )
      const events = instances.events(id).pipe(Stream.map((event) => [5001, Sth.toEvent(event)] as const))
      return Stream.merge(beats, events, { haltStrategy: "left" })
    }

    return handlers
      .handle("info", ({ params }) => Effect.andThen(exists(params.id), http(Effect.map(instances.info(params.id), Sth.toInstance))))
      .handle("health", ({ params }) =>
        Effect.andThen(ended404(params.id), http(Effect.map(instances.health(params.id), (health) => ({
          healthy: health.healthy,
          ...(health.pid === undefined ? {} : { processId: health.pid }),
          status: Sth.sthStatus(health.status),
          ...(health.runner === undefined ? {} : { runner: health.runner }),
          ...(health.uptimeMs === undefined ? {} : { uptimeMs: health.uptimeMs }),
          restarts: health.restarts,
          ...(health.stats === undefined ? {} : { cpuPercent: health.stats.cpuPercent, rssBytes: health.stats.rssBytes })
        })))))
      .handleRaw("stdout", ({ params, request }) => output(params.id, request, "stdout"))
      .handleRaw("stderr", ({ params, request }) => output(params.id, request, "stderr"))
      .handleRaw("output", ({ params, request }) => output(params.id, request, "output"))
      .handleRaw("log", ({ params }) =>
        Effect.as(
          exists(params.id),
          Responses.ndjson(instances.logs(params.id, { follow: true }).pipe(Stream.map(logRecord)))
        ))
      .handleRaw("stdin", ({ params, request }) => input(params.id, request, "stdin"))
      .handleRaw("input", ({ params, request }) => input(params.id, request, "input"))
      .handleRaw("inout", ({ params, request }) =>
        Effect.gen(function*() {
          const contentType = yield* Body.streamType(request, inputTypes)
          yield* exists(params.id)
          // One reader, this response: the process may take the connection itself.
          const exchange = yield* http(instances.openInout(params.id, { contentType, direct: true }))
          return Responses.stream(exchange(Body.stream(request)))
        }))
      .handleRaw("stop", ({ params, request }) =>
        Effect.gen(function*() {
          const body = Sth.unwrap(yield* Body.json(request, Sth.StopBody))
          const info = yield* exists(params.id)
          if (isEnded(info.status)) return Sth.toInstance(info)
          yield* FiberSet.run(
            background,
            instances.stop(params.id, { timeoutMs: body.timeout ?? 7000, canCallKeepalive: body.canCallKeepalive ?? false }).pipe(
              Effect.catchCause((cause) => Effect.logDebug(`stop of ${params.id} ended early`, cause))
            )
          )
          return Sth.toInstance({ ...info, status: "stopping" })
        }))
      .handleRaw("kill", ({ params, request }) =>
        Effect.gen(function*() {
          const body = Sth.unwrap(yield* Body.json(request, Sth.KillBody))
          yield* exists(params.id)
          const info = yield* http(instances.kill(params.id, { removeImmediately: body.removeImmediately ?? false }))
          return Sth.toInstance(info)
        }))
      .handleRaw("sendEvent", ({ params, request }) =>
        Effect.gen(function*() {
          const event = Sth.unwrap(yield* Body.json(request, Sth.EventBody))
          yield* exists(params.id)
          yield* http(instances.sendEvent(params.id, event.eventName, event.message ?? null))
          return { accepted: "OK" }
        }))
      .handle("once", ({ params }) =>
        Effect.andThen(exists(params.id), http(Effect.map(instances.nextEvent(params.id, params.name), Sth.toEvent))))
      .handle("event", ({ params }) =>
        Effect.andThen(exists(params.id), http(Effect.map(instances.lastEvent(params.id, params.name), Sth.toEvent))))
      .handleRaw("events", ({ params }) =>
        Effect.as(
          exists(params.id),
          Responses.ndjson(instances.events(params.id, params.name).pipe(Stream.map(Sth.toEvent)))
        ))
      .handleRaw("monitoring", ({ params }) => Effect.as(exists(params.id), Responses.ndjson(monitoring(params.id))))
      .handleRaw("monitoringRate", ({ params, request }) =>
        Effect.gen(function*() {
          const { monitoringRate } = Sth.unwrap(yield* Body.json(request, Sth.MonitoringRateBody))
          yield* exists(params.id)
          rates.delete(params.id)
          if (rates.size >= maxRates) rates.delete(rates.keys().next().value!)
          rates.set(params.id, Math.min(10, monitoringRate))
          return HttpServerResponse.jsonUnsafe({ accepted: true }, { status: 202 })
        }))
  })
)

/**
 * Every group's handlers: STH's host and instance groups, and shardhub's own.
 *
 * @since 0.4.0
 */
export const layer = Layer.mergeAll(hostHandlers, instanceHandlers, nativeHandlers)

