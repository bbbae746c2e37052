/**
 * The message store's added rules on a real Postgres: the first final reply to a request wins, a
 * second one is a no-op (Effect's own storage fails it with a unique violation, which stalled
 * its storage read loop in a handover race); and a read whose answer was lost is read again
 * after 30 s (Effect's own storage waits ten minutes); and a keep-alive is never handed to the
 * runner that took it again (a resident entity answers a repeated keep-alive at once, which
 * ended its failover).
 */
import * as NodeCrypto from "@effect/platform-node/NodeCrypto"
import { describe, expect, layer } from "@effect/vitest"
import type * as MessageStorage from "effect/cluster/MessageStorage"
import * as SqlMessageStorage from "effect/cluster/SqlMessageStorage"
import { Effect, Exit, Layer, Option, Redacted } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as MessageStore from "../../src/store/MessageStore.ts"
import * as Store from "../../src/store/Store.ts"
import { freshDatabase } from "../support/database.ts"

const storeLayer = Layer.unwrap(Effect.promise(() => freshDatabase("messages")).pipe(
  Effect.map((url) =>
    Layer.mergeAll(SqlMessageStorage.layerMigrations({}), NodeCrypto.layerDigest).pipe(
      Layer.provideMerge(Store.layer(
        { databaseUrl: Option.some(Redacted.make(url)), home: "/nonexistent", durable: false, binaryCache: "/nonexistent" },
        { applicationName: "shardhub-test" }
      ))
    )
  )
))

/** Stores a request to `entityId` on shard `default:<shard>`, as Effect's own storage does. */
const storeRequest = (storage: MessageStorage.Encoded, request: {
  readonly requestId: string
  readonly shard: number
  readonly entityId: string
  readonly tag: string
  readonly payload: unknown
}) =>
  storage.saveEnvelope({
    envelope: {
      _tag: "Request",
      requestId: request.requestId,
      address: { shardId: { group: "default", id: request.shard }, entityType: "Instance", entityId: request.entityId },
      tag: request.tag,
      payload: request.payload,
      headers: {}
    },
    primaryKey: null,
    deliverAt: null
  })

const withExit = (requestId: string, id: string) =>
  ({ _tag: "WithExit", requestId, id, exit: { _tag: "Success", value: null } }) as const

describe("message store", () => {
  layer(storeLayer, { timeout: 120_000, excludeTestServices: true })((it) => {
    it.effect("a second final reply to a request is a no-op that keeps the first (Effect's own storage refuses it)", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const ours = yield* MessageStore.makeEncoded
        const effects = yield* SqlMessageStorage.makeEncodedStorage({})
        yield* ours.saveReply(withExit("1001", "2001"))
        expect(yield* Effect.exit(effects.saveReply(withExit("1001", "2002")))).toMatchObject({ _tag: "Failure" })
        expect(Exit.isSuccess(yield* Effect.exit(ours.saveReply(withExit("1001", "2003"))))).toBe(true)
        const replies = yield* sql<{ id: string }>`SELECT id::text AS id FROM cluster_replies WHERE request_id = 1001`
        expect(replies.map((row) => row.id)).toEqual(["2001"])
      }))

    it.effect("unprocessed messages marked read but not processed are read again after 30 s (Effect's own storage: 10 minutes)", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const ours = yield* MessageStore.makeEncoded
        const effects = yield* SqlMessageStorage.makeEncodedStorage({})
        yield* storeRequest(effects, { requestId: "3001", shard: 7, entityId: "lost-read", tag: "Start", payload: {} })
        const shards: [string] = ["default:7"]
        expect(yield* ours.unprocessedMessages(shards, Date.now())).toHaveLength(1)
        // Read (marked), but the answer was lost: nobody re-reads it at once…
        expect(yield* ours.unprocessedMessages(shards, Date.now())).toHaveLength(0)
        yield* sql`UPDATE cluster_messages SET last_read = NOW() - INTERVAL '31 seconds' WHERE request_id = 3001`
        expect(yield* effects.unprocessedMessages(shards, Date.now())).toHaveLength(0)
        // …and after 30 s it is read again.
        const again = yield* ours.unprocessedMessages(shards, Date.now())
        expect(again.map((message) => message.envelope.requestId)).toEqual(["3001"])
      }))

    it.effect("a keep-alive taken once is not handed out again until its shard is acquired anew", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const ours = yield* MessageStore.makeEncoded
        const effects = yield* SqlMessageStorage.makeEncodedStorage({})
        yield* storeRequest(effects, { requestId: "4001", shard: 9, entityId: "resident", tag: "Cluster/Entity/keepAlive", payload: null })
        const shards: [string] = ["default:9"]
        const old = sql`UPDATE cluster_messages SET last_read = NOW() - INTERVAL '11 minutes' WHERE request_id = 4001`
        expect(yield* ours.unprocessedMessages(shards, Date.now())).toHaveLength(1)
        yield* old
        // Effect's own storage hands it out again (its resident entity would answer it at once)…
        expect(yield* effects.unprocessedMessages(shards, Date.now())).toHaveLength(1)
        yield* old
        expect(yield* ours.unprocessedMessages(shards, Date.now())).toHaveLength(0)
        // …here only a new owner of the shard gets it.
        yield* ours.resetShards(shards)
        expect(yield* ours.unprocessedMessages(shards, Date.now())).toHaveLength(1)
      }))
  })
})
