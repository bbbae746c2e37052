/**
 * Rolling replacement of instances (`shardhub reload`, `apply` of a changed app, the gateway's
 * `POST /api/shardhub/v1/reload`): a few copies at a time, each new copy ready — and still
 * running, unrestarted, `minHealthyMs` later — before the next old copy is touched.
 *
 * - **Order.** By default an old copy stops before its replacement starts (never two copies of
 *   one index at once; the other copies serve meanwhile). With `surge` the new copy starts
 *   first and the old one stops once it is ready (for a single copy: no gap, but two processes
 *   of that index for a moment).
 * - **Ready** is the record's `running` (see `InstanceSpec.readiness`). A copy that ends, is
 *   restarted before it was ready (a failed readiness), or is not ready by the deadline fails
 *   the rollout.
 * - **Revert.** On a failure the rollout stops and, unless `revert: false`, every copy it
 *   replaced is put back: the new copy is removed and the old one started again, one at a
 *   time, each waited for. Old copies stay on record, stopped (their logs readable), as `ps -a`
 *   shows them.
 *
 * The rollout runs where it is asked for (the CLI, the gateway): if that process dies midway,
 * what was replaced stays replaced and the rest is untouched; running it again finishes it.
 *
 * @since 0.9.0
 */
import { Effect } from "effect"
import { InstanceNotFound } from "../instance/InstanceErrors.ts"
import { type InstanceInfo, type InstanceSpec, isEnded, liveStatuses } from "../instance/InstanceSpec.ts"
import { copiesOf } from "./Apps.ts"
import { HostClient } from "./HostClient.ts"
import { InstanceClient } from "./InstanceClient.ts"

/**
 * One copy to replace: the instance that runs now (none for a new copy) and the spec its
 * replacement runs.
 *
 * @since 0.9.0
 */
export interface Replacement {
  readonly name: string
  readonly old: InstanceInfo | undefined
  readonly spec: InstanceSpec
}

/**
 * How a rollout proceeds.
 *
 * @since 0.9.0
 */
export interface Options {
  /** Copies replaced at once (default 1). */
  readonly parallel?: number | undefined
  /** How long a new copy must stay running, unrestarted, after it is ready (default 0). */
  readonly minHealthyMs?: number | undefined
  /** Put replaced copies back when one fails (default true). */
  readonly revert?: boolean | undefined
  /** Start the new copy before stopping the old (default false). */
  readonly surge?: boolean | undefined
  /** Graceful stop granted to an old copy, SIGKILL after (default 10 s). */
  readonly stopTimeoutMs?: number | undefined
  /** How long a new copy may take to be ready (default its readiness timeout + 10 s, else 30 s). */
  readonly readyTimeoutMs?: number | undefined
}

/**
 * What happened to one copy.
 *
 * @since 0.9.0
 */
export type Event =
  | { readonly _tag: "Stopped"; readonly name: string; readonly id: string }
  | { readonly _tag: "Started"; readonly name: string; readonly id: string }
  | { readonly _tag: "Ready"; readonly name: string; readonly id: string }
  | { readonly _tag: "Failed"; readonly name: string; readonly id: string; readonly reason: string }
  | { readonly _tag: "Reverted"; readonly name: string; readonly id: string | undefined }

/**
 * How a rollout ended: every copy replaced (`ok`), or stopped at a failure (and put back
 * when `reverted`).
 *
 * @since 0.9.0
 */
export interface Report {
  readonly ok: boolean
  readonly replaced: ReadonlyArray<{ readonly name: string; readonly old: string | undefined; readonly id: string }>
  readonly failed: ReadonlyArray<{ readonly name: string; readonly id: string; readonly reason: string }>
  readonly reverted: boolean
}

/** How long `spec` may take to be ready when the caller did not say. */
const readyDeadline = (spec: InstanceSpec) =>
  spec.readiness === undefined || spec.readiness._tag === "Immediate" ? 30_000 : spec.readiness.timeoutMs + 10_000

/**
 * The instances a reload of `target` replaces: `all` that should run, else one instance by id,
 * else the copies of an app (or the instances of a name).
 *
 * @since 0.9.0
 */
export const targets = (target: string) =>
  Effect.gen(function*() {
    const host = yield* HostClient
    const live = (yield* host.list({ statuses: liveStatuses })).filter((info) => info.desired === "running")
    if (target === "all") return live
    const byId = live.filter((info) => info.id === target)
    if (byId.length > 0) return byId
    const copies = copiesOf(live, target).map(({ info }) => info)
    if (copies.length === 0) return yield* new InstanceNotFound({ id: target })
    return copies
  })

/**
 * The replacements of a reload: each instance by a copy of itself.
 *
 * @since 0.9.0
 */
export const again = (instances: ReadonlyArray<InstanceInfo>): Array<Replacement> =>
  instances.map((info) => ({ name: info.name ?? info.id, old: info, spec: info.spec }))

/**
 * Waits until instance `id` is ready and then healthy for `minHealthyMs`; fails with why not.
 *
 * @since 0.9.0
 */
export const awaitReady = (id: string, options: { readonly timeoutMs: number; readonly minHealthyMs: number }) =>
  Effect.gen(function*() {
    const host = yield* HostClient
    const first = yield* host.get(id)
    // Restarts by its policy count against it; a failover (a new epoch: its runner died) does not.
    let { epoch, restarts } = first
    const deadline = Date.now() + options.timeoutMs
    /** `undefined` while it may still get there; else ready (`true`) or why not. */
    const verdict = (info: InstanceInfo): true | string | undefined => {
      if (isEnded(info.status)) return `it ended ${info.status}${info.reason === undefined ? "" : `: ${info.reason}`}`
      if (info.epoch !== epoch) ({ epoch, restarts } = info)
      if (info.restarts > restarts) return `it was restarted before it was ready${info.reason === undefined ? "" : `: ${info.reason}`}`
      if (info.status === "running") return true
      return Date.now() > deadline ? `not ready within ${options.timeoutMs} ms` : undefined
    }
    let seen = verdict(first)
    while (seen === undefined) {
      yield* Effect.sleep("100 millis")
      seen = verdict(yield* host.get(id))
    }
    if (seen !== true) return seen
    if (options.minHealthyMs > 0) {
      yield* Effect.sleep(options.minHealthyMs)
      const later = yield* host.get(id)
      if (later.status !== "running" || (later.epoch === epoch && later.restarts > restarts)) {
        return `it did not stay healthy for ${options.minHealthyMs} ms (${later.status}${later.reason === undefined ? "" : `: ${later.reason}`})`
      }
    }
    return undefined
  })

/**
 * Replaces `replacements` a batch at a time, telling `progress` each step.
 *
 * @since 0.9.0
 */
export const rollout = <R>(
  replacements: ReadonlyArray<Replacement>,
  options: Options,
  progress: (event: Event) => Effect.Effect<void, never, R>
) =>
  Effect.gen(function*() {
    const host = yield* HostClient
    const instances = yield* InstanceClient
    const parallel = Math.max(1, options.parallel ?? 1)
    const stopTimeoutMs = options.stopTimeoutMs ?? 10_000
    /** Copies touched so far (their new instance's id, once it was started) and those that made it. */
    const touched: Array<{ readonly replacement: Replacement; id: string | undefined }> = []
    const replaced: Array<{ readonly name: string; readonly old: string | undefined; readonly id: string }> = []
    const failed: Array<{ readonly name: string; readonly id: string; readonly reason: string }> = []

    const stopOld = (replacement: Replacement) =>
      replacement.old === undefined || isEnded(replacement.old.status)
        ? Effect.void
        : instances.stop(replacement.old.id, { timeoutMs: stopTimeoutMs }).pipe(
          Effect.andThen(progress({ _tag: "Stopped", name: replacement.name, id: replacement.old.id }))
        )

    /** Replaces one copy; a failure is recorded, not raised. */
    const replace = (replacement: Replacement) =>
      Effect.gen(function*() {
        const entry: { readonly replacement: Replacement; id: string | undefined } = { replacement, id: undefined }
        touched.push(entry)
        if (!options.surge) yield* stopOld(replacement)
        const started = yield* host.start(replacement.spec).pipe(
          Effect.map((info) => info.id),
          Effect.catch((error) => Effect.as(fail(replacement, "", `it could not be started: ${messageOf(error)}`), undefined))
        )
        if (started === undefined) return
        entry.id = started
        yield* progress({ _tag: "Started", name: replacement.name, id: started })
        const why = yield* awaitReady(started, {
          timeoutMs: options.readyTimeoutMs ?? readyDeadline(replacement.spec),
          minHealthyMs: options.minHealthyMs ?? 0
        })
        if (why !== undefined) return yield* fail(replacement, started, why)
        yield* progress({ _tag: "Ready", name: replacement.name, id: started })
        if (options.surge) yield* stopOld(replacement)
        replaced.push({ name: replacement.name, old: replacement.old?.id, id: started })
      })

    const fail = (replacement: Replacement, id: string, reason: string) => {
      failed.push({ name: replacement.name, id, reason })
      return progress({ _tag: "Failed", name: replacement.name, id, reason })
    }

    /** Puts one touched copy back: its new copy goes, its old one runs again. */
    const putBack = ({ id, replacement }: { readonly replacement: Replacement; readonly id: string | undefined }) =>
      Effect.gen(function*() {
        if (id !== undefined) yield* instances.kill(id, { removeImmediately: true })
        if (replacement.old !== undefined && !isEnded(replacement.old.status)) {
          yield* instances.restart(replacement.old.id, { timeoutMs: stopTimeoutMs })
          yield* awaitReady(replacement.old.id, { timeoutMs: readyDeadline(replacement.old.spec), minHealthyMs: 0 })
        }
        yield* progress({ _tag: "Reverted", name: replacement.name, id: replacement.old?.id })
      })

    for (let i = 0; i < replacements.length; i += parallel) {
      yield* Effect.forEach(replacements.slice(i, i + parallel), replace, { concurrency: parallel, discard: true })
      if (failed.length > 0 && options.revert !== false) break
    }
    const reverted = failed.length > 0 && options.revert !== false
    if (reverted) yield* Effect.forEach([...touched].reverse(), putBack, { discard: true })
    return { ok: failed.length === 0, replaced: reverted ? [] : replaced, failed, reverted } satisfies Report
  })

const messageOf = (error: unknown) =>
  typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)
