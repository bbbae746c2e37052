/**
 * Effect's SQL message storage (`cluster_messages`, `cluster_replies`) with two rules added.
 *
 * **1. The first final reply to a request wins.**
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
 * **2. A read that was lost is read again after 30 s, not 10 minutes.** A read of unprocessed
 * messages marks them read (`last_read`) in the same statement that returns them; when the
 * answer is lost (a connection that broke as a partition healed, a store restart), they are not
 * read again for ten minutes, and an entity whose keep-alive was among them is not re-activated
 * for that long (found by `npm run chaos`). Before each read, the owner's unprocessed messages
 * marked read more than 30 s ago become readable again. A request that is still being processed
 * here is then read and skipped.
 *
 * **3. A keep-alive this runner took is not handed to it again.** An entity holds Effect's
 * keep-alive as one persisted request that stays open while it is resident; on a shard move the
 * next owner reads it and re-activates the entity (how instances come back). But Effect reads an
 * unprocessed request again once its last read is old (10 minutes; 30 s with rule 2), and a
 * keep-alive delivered again to its resident entity is answered at once — which marks it
 * processed, so after the next move nobody re-activates the entity: **an instance resident
 * for more than ten minutes did not fail over** (`test/instance/failover.test.ts`). So the
 * keep-alives a read returned are remembered and left out of later reads, until the shard is
 * acquired again (`resetShards`), its address reset, or the keep-alive answered.
 *
 * @since 0.6.0
 */
import * as ClusterError from "effect/cluster/ClusterError"
import { KeepAliveRpc } from "effect/cluster/Entity"
import type * as Envelope from "effect/cluster/Envelope"
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
 * The encoded storage on the store's `SqlClient`, with the rules.
 *
 * @since 0.6.0
 */
export const makeEncoded = Effect.gen(function*() {
  const encoded = yield* SqlMessageStorage.makeEncodedStorage({})
  const sql = yield* SqlClient
  const persistence = (cause: unknown) => new ClusterError.PersistenceError({ cause })
  // Keep-alives taken here: shard → request id → entity.
  const taken = new Map<string, Map<string, string>>()
  const shardOf = (shardId: { readonly group: string; readonly id: number }) => `${shardId.group}:${shardId.id}`
  const entityOf = (address: { readonly entityType: string; readonly entityId: string }) => `${address.entityType}/${address.entityId}`
  const firstTime = (envelope: Envelope.Encoded) => {
    if (envelope._tag !== "Request" || envelope.tag !== KeepAliveRpc._tag) return true
    const shard = shardOf(envelope.address.shardId)
    const requests = taken.get(shard) ?? new Map<string, string>()
    taken.set(shard, requests)
    if (requests.has(envelope.requestId)) return false
    requests.set(envelope.requestId, entityOf(envelope.address))
    return true
  }
  const storage: MessageStorage.Encoded = {
    ...encoded,
    unprocessedMessages: (shardIds, now, options) =>
      sql`UPDATE cluster_messages SET last_read = NULL
        WHERE ${sql.in("shard_id", shardIds)} AND processed = false AND last_read < NOW() - INTERVAL '30 seconds'`.pipe(
        Effect.mapError(persistence),
        Effect.andThen(encoded.unprocessedMessages(shardIds, now, options)),
        Effect.map((messages) => messages.filter((message) => firstTime(message.envelope)))
      ),
    resetShards: (shardIds) =>
      Effect.suspend(() => {
        for (const shard of shardIds) taken.delete(shard)
        return encoded.resetShards(shardIds)
      }),
    resetAddresses: (addresses) =>
      Effect.suspend(() => {
        for (const address of addresses) {
          const requests = taken.get(shardOf(address.shardId))
          const entity = entityOf(address)
          for (const [id, of] of requests ?? []) if (of === entity) requests!.delete(id)
        }
        return encoded.resetAddresses(addresses)
      }),
    saveReply: (reply) =>
      encoded.saveReply(reply).pipe(
        Effect.catchIf(
          (error) => reply._tag === "WithExit" && isUniqueViolation(error),
          () =>
            sql`UPDATE cluster_messages SET processed = true WHERE request_id = ${reply.requestId}`.pipe(
              Effect.asVoid,
              Effect.mapError(persistence)
            )
        ),
        // An answered keep-alive is done: nothing to remember.
        Effect.tap(() =>
          Effect.sync(() => {
            if (reply._tag === "WithExit") for (const requests of taken.values()) requests.delete(reply.requestId)
          })
        )
      )
  }
  return storage
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
