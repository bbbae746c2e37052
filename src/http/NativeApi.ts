/**
 * shardhub's own HTTP API, beside STH's: `/api/shardhub/v1` does what the CLI does — start a
 * command (or sequence) instance with the full spec, list and read records (runner, restarts,
 * labels), stop, kill, restart and forget instances, read logs (the last lines, then live as
 * NDJSON) and events, stats, runners, and reload an app copy by copy. The same guard as STH's endpoints applies (token, Host and Origin
 * checks, JSON bodies).
 *
 * @since 0.6.0
 */
import { Schema } from "effect"
import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "effect/http-api"
import { InstanceInfo, InstanceSpec } from "../instance/InstanceSpec.ts"
import { ProcessStats } from "../process/ProcessStatus.ts"
import * as HttpErrors from "./HttpErrors.ts"

const error = HttpErrors.all
const id = { id: Schema.String }
const ndjson = HttpApiSchema.StreamUint8Array({ contentType: "application/x-ndjson" })
const Timeout = Schema.Struct({
  timeoutMs: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 3_600_000 })))
})

/** What a reload is asked with (see `shardhub reload`). @since 0.9.0 */
export const ReloadBody = Schema.Struct({
  target: Schema.NonEmptyString,
  parallel: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1000 }))),
  minHealthyMs: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 3_600_000 }))),
  revert: Schema.optionalKey(Schema.Boolean),
  surge: Schema.optionalKey(Schema.Boolean),
  timeoutMs: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 3_600_000 })))
})

/** @since 0.10.0 */
export const DrainBody = Schema.Struct({
  parallel: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1000 })))
})

const runnerAddress = { address: Schema.String }

/** A runner as the store sees it. @since 0.6.0 */
export const Runner = Schema.Struct({
  address: Schema.String,
  healthy: Schema.Boolean,
  drained: Schema.Boolean,
  labels: Schema.Record(Schema.String, Schema.String),
  heartbeatAgeMs: Schema.Number,
  shards: Schema.Number,
  instances: Schema.Number
})

/** @since 0.6.0 */
export class NativeApi extends HttpApiGroup.make("native")
  .add(
    HttpApiEndpoint.get("list", "/instances", {
      query: { all: Schema.optionalKey(Schema.Literals(["true", "false"])) },
      success: Schema.Array(InstanceInfo),
      error
    }).annotate(OpenApi.Description, "Live instances, newest first (all=true: ended ones too)."),
    HttpApiEndpoint.post("start", "/instances", {
      payload: Schema.Struct({ spec: InstanceSpec, id: Schema.optionalKey(Schema.String) }),
      success: InstanceInfo,
      error
    }).annotate(OpenApi.Description, "Starts an instance of the spec; answers once its process runs."),
    HttpApiEndpoint.get("get", "/instances/:id", { params: id, success: InstanceInfo, error }),
    HttpApiEndpoint.post("stop", "/instances/:id/stop", { params: id, payload: Timeout, success: InstanceInfo, error })
      .annotate(OpenApi.Description, "SIGTERM, SIGKILL after timeoutMs (default 10000); answers with the final record."),
    HttpApiEndpoint.post("kill", "/instances/:id/kill", { params: id, success: InstanceInfo, error }),
    HttpApiEndpoint.post("restart", "/instances/:id/restart", { params: id, payload: Timeout, success: InstanceInfo, error })
      .annotate(OpenApi.Description, "A graceful stop, then a new process under the same id (its log continued)."),
    HttpApiEndpoint.delete("remove", "/instances/:id", { params: id, success: InstanceInfo, error })
      .annotate(OpenApi.Description, "Forgets the instance now, killing its process if it runs."),
    HttpApiEndpoint.get("logs", "/instances/:id/logs", {
      params: id,
      query: {
        tail: Schema.optionalKey(Schema.NumberFromString.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: 100_000 }))),
        follow: Schema.optionalKey(Schema.Literals(["true", "false"]))
      },
      success: ndjson,
      error
    }).annotate(OpenApi.Description, "Log lines {seq, time, stream, text} as NDJSON: the last `tail` (default all kept), then live with follow=true."),
    HttpApiEndpoint.get("stats", "/instances/:id/stats", { params: id, success: ProcessStats, error }),
    HttpApiEndpoint.get("events", "/instances/:id/events", { params: id, success: ndjson, error })
      .annotate(OpenApi.Description, "Every event the instance emits from now on, as NDJSON {name, data}, until it ends."),
    HttpApiEndpoint.post("sendBundle", "/bundles", {
      payload: HttpApiSchema.StreamUint8Array({ contentType: ["application/octet-stream", "application/gzip"] }),
      success: Schema.Struct({ hash: Schema.String, size: Schema.Number }),
      error
    }).annotate(
      OpenApi.Description,
      "Stores a bundle: a tar.gz or tar of any directory (up to 256 MiB; no absolute paths, no .., no links out). " +
        "A command whose spec names its hash (program.bundle) runs in it on whichever runner runs it."
    ),
    HttpApiEndpoint.get("runners", "/runners", { success: Schema.Array(Runner), error }),
    HttpApiEndpoint.post("drain", "/runners/:address/drain", { params: runnerAddress, payload: DrainBody, success: ndjson, error }).annotate(
      OpenApi.Description,
      "Drains the runner: its instances move to the other runners `parallel` (default 4) at a time, each running on its new " +
        "runner before the next goes, and it takes nothing new. NDJSON progress {address, instances, shards} until it holds " +
        "none. The drain goes on if the caller leaves. 404 for an unknown runner, 409 when no other healthy runner is left."
    ),
    HttpApiEndpoint.post("undrain", "/runners/:address/undrain", { params: runnerAddress, success: Schema.Struct({ address: Schema.String }), error })
      .annotate(OpenApi.Description, "Ends a drain: the runner takes shards again. 409 when it is not drained."),
    HttpApiEndpoint.post("reload", "/reload", { payload: ReloadBody, success: ndjson, error }).annotate(
      OpenApi.Description,
      "Replaces the copies `target` names (an app, an instance, or all) a few at a time, each ready before the next: " +
        "NDJSON progress {_tag: Stopped|Started|Ready|Failed|Reverted, name, id}, then the report {ok, replaced, failed, reverted}. " +
        "The rollout goes on if the caller leaves."
    )
  )
  .prefix("/api/shardhub/v1") {}
