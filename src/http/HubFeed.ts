/**
 * The gateway's own feeds, as STH's hub serves them: `GET /log` (the hub's log: every line the
 * gateway logs, its access log included) and `GET /audit` (one record per API operation once it
 * was answered). Each is a sliding buffer: a slow reader misses records, never slows the gateway;
 * a new reader first gets the last 100.
 *
 * @since 0.6.0
 */
import { Cause, Context, Effect, Layer, Logger, PubSub } from "effect"

/**
 * A record of the hub log (STH's fields: level, msg, ts, from).
 *
 * @since 0.6.0
 */
export interface LogRecord {
  readonly level: string
  readonly msg: string
  readonly ts: number
  readonly from: "gateway"
  readonly data?: string
}

/**
 * A record of the audit feed: one API operation, once answered.
 *
 * @since 0.6.0
 */
export interface AuditRecord {
  readonly opState: "REQUEST_END"
  readonly opCode: string
  readonly requestId: string
  readonly objectId?: string
  readonly method: string
  readonly path: string
  readonly status: number
  /** Bytes received, as the request declared them (0 for a streamed body). */
  readonly rx: number
  readonly receivedAt: number
  readonly endedAt: number
}

/** @since 0.6.0 */
export class HubFeed extends Context.Service<HubFeed, {
  readonly log: PubSub.PubSub<LogRecord>
  readonly audit: PubSub.PubSub<AuditRecord>
}>()("shardhub/HubFeed") {}

const feed = <A>() => PubSub.sliding<A>({ capacity: 1024, replay: 100 })

/**
 * The feeds, and a logger that copies every log line of the layers it is provided to into the
 * hub log (beside the usual output).
 *
 * @since 0.6.0
 */
export const layer = Layer.effect(HubFeed, Effect.all({ log: feed<LogRecord>(), audit: feed<AuditRecord>() }))

/** @since 0.6.0 */
export const loggerLayer = Layer.unwrap(Effect.map(Effect.service(HubFeed), ({ log }) =>
  Logger.layer([
    Logger.make<unknown, void>((options) => {
      const messages = Array.isArray(options.message) ? options.message : [options.message]
      PubSub.publishUnsafe<LogRecord>(log, {
        level: options.logLevel.toUpperCase(),
        msg: messages.map((part) => typeof part === "string" ? part : JSON.stringify(part)).join(" "),
        ts: options.date.getTime(),
        from: "gateway",
        ...(options.cause.reasons.length === 0 ? {} : { data: Cause.pretty(options.cause) })
      })
    })
  ], { mergeWithExisting: true })))
