/**
 * The gateway's HTTP API: STH's `/api/v1` (host, sequences, instances, topics), so the published
 * `@scramjet/api-client` and `si` drive shardhub unchanged. `/api/v1/openapi.json` and the docs
 * page at `/api/v1/docs` come from this definition.
 *
 * Byte streams are chunked and long-lived; their endpoints take and give
 * `application/octet-stream` (input also `text/plain` and `application/x-ndjson`).
 *
 * @since 0.4.0
 */
import { Schema } from "effect"
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "effect/http-api"
import * as HttpErrors from "./HttpErrors.ts"
import { NativeApi } from "./NativeApi.ts"
import * as Sth from "./Sth.ts"

const error = HttpErrors.all
const bytes = HttpApiSchema.StreamUint8Array()
const ndjson = HttpApiSchema.StreamUint8Array({ contentType: "application/x-ndjson" })
const input = HttpApiSchema.StreamUint8Array({
  contentType: ["application/octet-stream", "text/plain", "application/x-ndjson", "text/x-ndjson"]
})
const endStream = {
  "x-end-stream": Schema.optionalKey(Schema.Literals(["true", "false"])).annotate({
    description: "Whether the end of this body ends the process's input (default true)."
  })
}
const id = { id: Schema.String }
const idAndName = { id: Schema.String, name: Schema.String }
const accepted = Schema.Struct({ accepted: Schema.String })

/** @since 0.4.0 */
export class HostApi extends HttpApiGroup.make("host")
  .add(
    HttpApiEndpoint.get("version", "/version", { success: Sth.Version, error }),
    HttpApiEndpoint.get("loadCheck", "/load-check", { success: Sth.LoadCheck, error }),
    HttpApiEndpoint.get("config", "/config", { success: Sth.HostConfig, error }),
    HttpApiEndpoint.get("status", "/status", { success: Sth.HostStatus, error }),
    HttpApiEndpoint.get("entities", "/entities", { success: Sth.Entities, error }),
    HttpApiEndpoint.get("hubLog", "/log", { success: ndjson, error })
      .annotate(OpenApi.Description, "The gateway's log as NDJSON {level, msg, ts, from}: the last 100 records, then live."),
    HttpApiEndpoint.get("audit", "/audit", { success: ndjson, error })
      .annotate(OpenApi.Description, "One NDJSON record per API operation once answered: the last 100, then live."),
    HttpApiEndpoint.get("listSequences", "/sequences", { success: Schema.Array(Sth.Sequence), error }),
    HttpApiEndpoint.post("sendSequence", "/sequence", {
      payload: HttpApiSchema.StreamUint8Array({ contentType: ["application/octet-stream", "application/gzip"] }),
      success: Schema.Struct({ id: Schema.String }),
      error
    }).annotate(OpenApi.Description, "Upload a sequence package (tar.gz or tar, up to 256 MiB)."),
    HttpApiEndpoint.put("replaceSequence", "/sequence/:id", {
      params: id,
      payload: HttpApiSchema.StreamUint8Array({ contentType: ["application/octet-stream", "application/gzip"] }),
      success: Schema.Struct({ id: Schema.String }),
      error
    }).annotate(OpenApi.Description, "Replace a sequence's package, keeping its id; refused (409) while instances of it run."),
    HttpApiEndpoint.get("getSequence", "/sequence/:id", { params: id, success: Sth.Sequence, error }),
    HttpApiEndpoint.get("sequenceInstances", "/sequence/:id/instances", {
      params: id,
      success: Schema.Array(Schema.String),
      error
    }),
    HttpApiEndpoint.delete("deleteSequence", "/sequence/:id", {
      params: id,
      headers: { "x-seq-kill-inst": Schema.optionalKey(Schema.Literals(["true", "false"])) },
      success: Schema.Struct({ id: Schema.String }),
      error
    }).annotate(OpenApi.Description, "Refused (409) while instances of it run, unless x-seq-kill-inst: true."),
    HttpApiEndpoint.post("startSequence", "/sequence/:id/start", {
      params: id,
      payload: Sth.StartBody,
      success: Schema.Struct({ message: Schema.String, id: Schema.String }),
      error
    }).annotate(OpenApi.Description, "Answers once the instance can take input. `:id` may be the sequence's name."),
    HttpApiEndpoint.get("listInstances", "/instances", { success: Schema.Array(Sth.Instance), error }),
    HttpApiEndpoint.get("topics", "/topics", { success: Schema.Array(Sth.TopicInfo), error })
      .annotate(OpenApi.Description, "Topics created, published to, or wired to an instance."),
    HttpApiEndpoint.post("createTopic", "/topics", { payload: Sth.CreateTopicBody, success: Sth.CreatedTopic, error })
      .annotate(OpenApi.Description, "400 if it exists already."),
    HttpApiEndpoint.delete("deleteTopic", "/topics/:topic", {
      params: { topic: Schema.String },
      success: Schema.Struct({ message: Schema.String }),
      error
    }).annotate(OpenApi.Description, "Refused (409) while a live instance is wired to it."),
    HttpApiEndpoint.post("publish", "/topic/:topic", {
      params: { topic: Schema.String },
      headers: {
        "x-end-stream": Schema.optionalKey(Schema.Literals(["true", "false"])).annotate({
          description: "Whether the end of this body ends the topic's stream for its consumers (default false)."
        })
      },
      payload: input,
      success: HttpApiSchema.Empty(200),
      error
    }),
    HttpApiEndpoint.get("subscribe", "/topic/:topic", { params: { topic: Schema.String }, success: bytes, error })
  ) {}

/** @since 0.4.0 */
export class InstanceApi extends HttpApiGroup.make("instance")
  .add(
    HttpApiEndpoint.get("info", "/instance/:id", { params: id, success: Sth.Instance, error }),
    HttpApiEndpoint.get("health", "/instance/:id/health", { params: id, success: Sth.Health, error }),
    HttpApiEndpoint.get("stdout", "/instance/:id/stdout", { params: id, success: bytes, error }),
    HttpApiEndpoint.get("stderr", "/instance/:id/stderr", { params: id, success: bytes, error }),
    HttpApiEndpoint.get("output", "/instance/:id/output", { params: id, success: bytes, error }),
    HttpApiEndpoint.get("log", "/instance/:id/log", { params: id, success: ndjson, error })
      .annotate(OpenApi.Description, "NDJSON log records {level, msg, ts, from, stream}, live until the process ends."),
    HttpApiEndpoint.post("stdin", "/instance/:id/stdin", {
      params: id,
      headers: endStream,
      payload: bytes,
      success: [HttpApiSchema.Empty(200), HttpApiSchema.Empty(202)],
      error
    }),
    HttpApiEndpoint.post("input", "/instance/:id/input", {
      params: id,
      headers: endStream,
      payload: input,
      success: [HttpApiSchema.Empty(200), HttpApiSchema.Empty(202)],
      error
    }).annotate(
      OpenApi.Description,
      "Answers at once (200 when this body ends the input, 202 when not); the body ends when the process took every byte."
    ),
    HttpApiEndpoint.post("inout", "/instance/:id/inout", { params: id, payload: input, success: bytes, error }),
    HttpApiEndpoint.post("stop", "/instance/:id/_stop", {
      params: id,
      payload: Sth.StopBody,
      success: Sth.Instance.pipe(HttpApiSchema.status(202)),
      error
    }).annotate(
      OpenApi.Description,
      "Answers at once with status stopping; SIGKILL after `timeout` ms (default 7000). A keep-alive from the sequence cancels it when canCallKeepalive."
    ),
    HttpApiEndpoint.post("kill", "/instance/:id/_kill", {
      params: id,
      payload: Sth.KillBody,
      success: Sth.Instance.pipe(HttpApiSchema.status(202)),
      error
    }),
    HttpApiEndpoint.post("sendEvent", "/instance/:id/_event", { params: id, payload: Sth.EventBody, success: accepted, error }),
    HttpApiEndpoint.get("once", "/instance/:id/once/:name", { params: idAndName, success: Sth.Event, error })
      .annotate(OpenApi.Description, "Waits for the next event of that name."),
    HttpApiEndpoint.get("event", "/instance/:id/event/:name", { params: idAndName, success: Sth.Event, error })
      .annotate(OpenApi.Description, "The last event of that name, or waits for the next one."),
    HttpApiEndpoint.get("events", "/instance/:id/events/:name", { params: idAndName, success: ndjson, error }),
    HttpApiEndpoint.get("monitoring", "/instance/:id/monitoring", { params: id, success: ndjson, error }).annotate(
      OpenApi.Description,
      "NDJSON [3001, {healthy, processId}] at the instance's monitoring rate (default 1/s) and [5001, {eventName, message}] for its events, until it ends."
    ),
    HttpApiEndpoint.post("monitoringRate", "/instance/:id/_monitoring_rate", {
      params: id,
      payload: Sth.MonitoringRateBody,
      success: Schema.Struct({ accepted: Schema.Boolean }).pipe(HttpApiSchema.status(202)),
      error
    }).annotate(OpenApi.Description, "Messages per second on /monitoring (at most 10).")
  ) {}

/**
 * @since 0.4.0
 */
export class Api extends HttpApi.make("shardhub")
  .add(HostApi.prefix("/api/v1"))
  .add(InstanceApi.prefix("/api/v1"))
  .add(NativeApi)
  .annotateMerge(OpenApi.annotations({
    title: "shardhub gateway",
    version: "v1",
    description: "Scramjet Transform Hub's /api/v1, and shardhub's own /api/shardhub/v1, on a shardhub cluster. " +
      "Errors are JSON {error, code}."
  })) {}
