/**
 * The handlers of `/api/shardhub/v1` (`NativeApi.ts`), on the same clients as the CLI.
 *
 * @since 0.6.0
 */
import { Cause, Effect, Queue, Stream } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { HostClient } from "../client/HostClient.ts"
import { InstanceClient } from "../client/InstanceClient.ts"
import * as Rollout from "../client/Rollout.ts"
import { liveStatuses } from "../instance/InstanceSpec.ts"
import { Api } from "./Api.ts"
import * as Body from "./Body.ts"
import { DrainBody, ReloadBody } from "./NativeApi.ts"
import { http } from "./HttpErrors.ts"
import * as Responses from "./Responses.ts"

/** @since 0.6.0 */
export const nativeHandlers = HttpApiBuilder.group(
  Api,
  "native",
  Effect.fn(function*(handlers) {
    const host = yield* HostClient
    const instances = yield* InstanceClient
    return handlers
      .handle("list", ({ query }) => http(host.list(query.all === "true" ? {} : { statuses: liveStatuses })))
      .handle("start", ({ payload }) => http(host.start(payload.spec, payload.id === undefined ? {} : { id: payload.id })))
      .handle("get", ({ params }) => http(host.get(params.id)))
      .handle("stop", ({ params, payload }) => http(instances.stop(params.id, { timeoutMs: payload.timeoutMs ?? 10_000 })))
      .handle("kill", ({ params }) => http(instances.kill(params.id)))
      .handle("restart", ({ params, payload }) => http(instances.restart(params.id, { timeoutMs: payload.timeoutMs ?? 10_000 })))
      .handle("remove", ({ params }) => http(instances.kill(params.id, { removeImmediately: true })))
      .handleRaw("logs", ({ params, query }) =>
        Effect.as(
          http(host.get(params.id)),
          Responses.ndjson(instances.logs(params.id, {
            ...(query.tail === undefined ? {} : { tail: query.tail }),
            ...(query.follow === "true" ? { follow: true } : {})
          }))
        ))
      .handle("stats", ({ params }) => http(instances.stats(params.id)))
      .handleRaw("events", ({ params }) =>
        Effect.as(http(host.get(params.id)), Responses.ndjson(instances.events(params.id))))
      .handleRaw("sendBundle", ({ request }) =>
        Effect.gen(function*() {
          yield* Body.streamType(request, Body.packageTypes, { required: true })
          return yield* http(host.sendBundle(Body.bounded(request, Body.maxPackageBytes, "the bundle")))
        }))
      .handle("runners", () => http(host.runners))
      .handleRaw("drain", ({ params, request }) =>
        Effect.gen(function*() {
          const payload = yield* Body.json(request, DrainBody)
          const progress = yield* http(host.drain(params.address, { parallel: payload.parallel ?? 4 }))
          return Responses.ndjson(progress.pipe(Stream.catchCause((cause) => Stream.make({ _tag: "Error", message: Cause.pretty(cause).split("\n")[0] }))))
        }))
      .handle("undrain", ({ params }) => http(Effect.as(host.undrain(params.address), { address: params.address })))
      .handleRaw("reload", ({ request }) =>
        Effect.gen(function*() {
          const payload = yield* Body.json(request, ReloadBody)
          const targets = yield* http(Rollout.targets(payload.target))
          const progress = yield* Queue.unbounded<unknown, Cause.Done>()
          // The rollout belongs to the gateway, not to the request: a caller that leaves does
          // not leave copies half replaced.
          yield* Rollout.rollout(Rollout.again(targets), {
            parallel: payload.parallel,
            minHealthyMs: payload.minHealthyMs,
            revert: payload.revert,
            surge: payload.surge,
            stopTimeoutMs: payload.timeoutMs
          }, (event) => Effect.asVoid(Queue.offer(progress, event))).pipe(
            Effect.flatMap((report) => Queue.offer(progress, report)),
            Effect.catchCause((cause) => Queue.offer(progress, { _tag: "Error", message: Cause.pretty(cause).split("\n")[0] })),
            Effect.ensuring(Queue.end(progress)),
            Effect.provideService(HostClient, host),
            Effect.provideService(InstanceClient, instances),
            Effect.forkDetach
          )
          return Responses.ndjson(Stream.fromQueue(progress))
        }))
  })
)
