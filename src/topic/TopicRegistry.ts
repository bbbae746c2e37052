/**
 * The topics the cluster knows of, kept in the cluster store (`shardhub_topics`): those created
 * through the API (STH's `POST /topics`), published to, or wired to an instance. A topic works
 * without a row; the rows are what a listing shows beside the topics of live instances.
 *
 * @since 0.6.0
 */
import { Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { invalidName, isTopicName, TopicError } from "./Topic.ts"

/**
 * A known topic.
 *
 * @since 0.6.0
 */
export interface TopicRecord {
  readonly name: string
  readonly contentType: string
  readonly origin: "api" | "publish" | "instance"
  readonly durable: boolean
  readonly createdAt: number
}

interface Row {
  readonly name: string
  readonly content_type: string
  readonly origin: TopicRecord["origin"]
  readonly durable: boolean
  readonly created_at: Date
}

const toRecord = (row: Row): TopicRecord => ({
  name: row.name,
  contentType: row.content_type,
  origin: row.origin,
  durable: row.durable,
  createdAt: row.created_at.getTime()
})

const unavailable = (topic: string) => (error: SqlError) =>
  new TopicError({ topic, reason: "StoreUnavailable", message: `cluster store: ${error.message}` })

/**
 * @since 0.6.0
 */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient
  return {
    /** Every known topic, by name. */
    list: sql<Row>`SELECT * FROM shardhub_topics ORDER BY name`.pipe(
      Effect.map((rows) => rows.map(toRecord)),
      Effect.mapError(unavailable("*"))
    ),
    /** Creates a topic (`durable`: kept in the store, see `Durable`); fails with `Exists` if it is known already. */
    create: (name: string, contentType: string, options: { readonly durable?: boolean } = {}) =>
      !isTopicName(name)
        ? Effect.fail(invalidName(name))
        : sql<Row>`INSERT INTO shardhub_topics (name, content_type, origin, durable)
            VALUES (${name}, ${contentType}, 'api', ${options.durable === true})
            ON CONFLICT (name) DO NOTHING RETURNING *`.pipe(
            Effect.mapError(unavailable(name)),
            Effect.flatMap((rows) =>
              rows.length === 0
                ? Effect.fail(new TopicError({ topic: name, reason: "Exists", message: `topic ${name} already exists` }))
                : Effect.succeed(toRecord(rows[0]!))
            )
          ),
    /** Notes that a topic is in use (a no-op if it is known); a store failure is only logged. */
    note: (name: string, contentType: string, origin: "publish" | "instance") =>
      sql`INSERT INTO shardhub_topics (name, content_type, origin) VALUES (${name}, ${contentType}, ${origin})
        ON CONFLICT (name) DO NOTHING`.pipe(
        Effect.asVoid,
        Effect.catchCause((cause) => Effect.logWarning(`could not note topic ${name}`, cause))
      ),
    /** Forgets a topic (a durable one with its chunks and cursors); fails with `NotFound` if it was not known. */
    remove: (name: string) =>
      sql.withTransaction(Effect.gen(function*() {
        yield* sql`DELETE FROM shardhub_topic_log WHERE topic = ${name}`
        yield* sql`DELETE FROM shardhub_topic_cursors WHERE topic = ${name}`
        return yield* sql<{ name: string }>`DELETE FROM shardhub_topics WHERE name = ${name} RETURNING name`
      })).pipe(
        Effect.mapError(unavailable(name)),
        Effect.flatMap((rows) =>
          rows.length === 0
            ? Effect.fail(new TopicError({ topic: name, reason: "NotFound", message: `no topic ${name}` }))
            : Effect.void
        )
      )
  }
})

/**
 * The known topics of a participant, made once (not per instance entity activation).
 *
 * @since 0.10.0
 */
export class KnownTopics extends Context.Service<KnownTopics, Effect.Success<typeof make>>()("shardhub/KnownTopics") {}

/** @since 0.10.0 */
export const layer: Layer.Layer<KnownTopics, never, SqlClient> = Layer.effect(KnownTopics, make)
