/**
 * Keeps the store's bookkeeping bounded. Effect cluster keeps every persisted message and its
 * replies after they were processed, and every runner start records a probe activation; none
 * of it is read again once it is older than a few seconds. A runner singleton deletes what is
 * older than the instance retention, every 30 seconds:
 *
 * - processed messages (`cluster_messages`) and their replies (`cluster_replies`): a message id
 *   is a Snowflake, whose high bits are its creation time. A start repeated after its message
 *   was pruned finds its instance by start key and runs nothing twice;
 * - ended probe activations (`shardhub_activations`);
 * - bundles no instance record names (`run --bundle`), unused since then, with their bytes;
 * - the cursors of durable topics' consumers whose instance ended or is gone (they no longer
 *   hold chunks back), and the chunks every remaining consumer has.
 *
 * @since 0.5.0
 */
import * as MachineId from "effect/cluster/MachineId"
import * as Snowflake from "effect/cluster/Snowflake"
import { Duration, Effect, Schedule } from "effect"
import { SqlClient } from "effect/sql/SqlClient"

/**
 * Deletes what was done before `before` (ms since the epoch); answers the row counts.
 *
 * @since 0.5.0
 */
export const prune = (before: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const cutoff = String(Snowflake.make({ timestamp: Math.max(Snowflake.constEpochMillis, before), machineId: MachineId.make(0), sequence: 0 }))
    return yield* sql.withTransaction(Effect.gen(function*() {
      const replies = yield* sql`
        DELETE FROM cluster_replies WHERE request_id IN (
          SELECT request_id FROM cluster_messages WHERE processed AND id < ${cutoff}::bigint)`.raw
      const messages = yield* sql`DELETE FROM cluster_messages WHERE processed AND id < ${cutoff}::bigint`.raw
      const activations = yield* sql`
        DELETE FROM shardhub_activations WHERE ended_at < to_timestamp(${before / 1000})`.raw
      const bundles = yield* sql<{ hash: string }>`
        DELETE FROM shardhub_bundles b WHERE used_at < to_timestamp(${before / 1000})
          AND NOT EXISTS (SELECT 1 FROM shardhub_instances i WHERE i.spec->'program'->>'bundle' = b.hash)
        RETURNING hash`
      if (bundles.length > 0) {
        yield* sql`DELETE FROM shardhub_sequence_chunks c WHERE ${sql.in("c.hash", bundles.map((b) => b.hash))}
          AND NOT EXISTS (SELECT 1 FROM shardhub_sequences s WHERE s.hash = c.hash)`
      }
      const cursors = yield* sql`
        DELETE FROM shardhub_topic_cursors c WHERE NOT EXISTS (
          SELECT 1 FROM shardhub_instances i WHERE i.id = c.consumer AND i.status NOT IN ('stopped', 'crashed'))`.raw
      if (((cursors as { rowCount?: number }).rowCount ?? 0) > 0) {
        yield* sql`DELETE FROM shardhub_topic_log l
          WHERE l.n < (SELECT min(c.n) FROM shardhub_topic_cursors c WHERE c.topic = l.topic)`
      }
      return {
        messages: (messages as { rowCount?: number }).rowCount ?? 0,
        replies: (replies as { rowCount?: number }).rowCount ?? 0,
        activations: (activations as { rowCount?: number }).rowCount ?? 0,
        bundles: bundles.length
      }
    }))
  })

/**
 * {@link prune} of everything older than `retention`, every `interval`; failures are logged.
 *
 * @since 0.5.0
 */
export const pruneEvery = (retention: Duration.Duration, interval: Duration.Input = "30 seconds") =>
  Effect.suspend(() => prune(Date.now() - Duration.toMillis(retention))).pipe(
    Effect.catch((error) => Effect.logWarning(`could not prune the store: ${String(error)}`)),
    Effect.repeat(Schedule.spaced(interval)),
    Effect.asVoid
  )
