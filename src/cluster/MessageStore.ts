/**
 * Effect's SQL message storage (`cluster_messages`, `cluster_replies`) with one rule added: **the
 * first final reply to a request wins.**
 *
 * Why: in a handover race two runners can both take the same persisted request — the runner
 * that is losing a shard (a partition healed, a freeze ended) and its new owner. Both then save
 * a final reply (a keep-alive's, typically), and the second insert breaks the unique key
 * `(request_id, kind)`. Effect turns that into a defect, and its storage read loop then fails to
 * save the defect reply for the same reason: the loop gives up that read, and the messages it
 * had read but not yet delivered are not read again for ten minutes (`last_read`). Entities
 * whose keep-alive was among them were not re-activated — instances stayed down (found by the
 * partition cycles of `npm run chaos`).
 *
 * Here a final reply to a request that already has one is a no-op that marks the request
 * processed (the transaction that would have done so was rolled back with the insert): the
 * outcome already stored stands, as it must for an idempotent request store.
 *
 * @since 0.6.0
 */
import * as ClusterError from "effect/cluster/ClusterError"
import * as MessageStorage from "effect/cluster/MessageStorage"
import * as Snowflake from "effect/cluster/Snowflake"
import * as SqlMessageStorage from "effect/cluster/SqlMessageStorage"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql/SqlClient"

/** Whether `error` (or what caused it) is Postgres' unique violation. */
const isUniqueViolation = (error: unknown): boolean => {
  for (let at: unknown = error, depth = 0; at !== undefined && at !== null && depth < 6; depth++) {
    if ((at as { code?: unknown }).code === "23505") return true
    at = (at as { cause?: unknown }).cause
  }
  return false
}

/**
 * The encoded storage on the store's `SqlClient`, with the rule.
 *
 * @since 0.6.0
 */
export const makeEncoded = Effect.gen(function*() {
  const encoded = yield* SqlMessageStorage.makeEncodedStorage({})
  const sql = yield* SqlClient
  return {
    ...encoded,
    saveReply: (reply) =>
      encoded.saveReply(reply).pipe(
        Effect.catchIf(
          (error) => reply._tag === "WithExit" && isUniqueViolation(error),
          () =>
            sql`UPDATE cluster_messages SET processed = true WHERE request_id = ${reply.requestId}`.pipe(
              Effect.asVoid,
              Effect.mapError((cause) => new ClusterError.PersistenceError({ cause }))
            )
        )
      )
  } satisfies MessageStorage.Encoded
})

/**
 * The storage, for a participant on the store's `SqlClient` (tables migrated first).
 *
 * @since 0.6.0
 */
export const layer = Layer.effect(MessageStorage.MessageStorage, Effect.flatMap(makeEncoded, MessageStorage.makeEncoded)).pipe(
  Layer.provide(Snowflake.layerGenerator),
  Layer.provide(SqlMessageStorage.layerMigrations({}))
)
