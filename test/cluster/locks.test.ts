/**
 * Shard locks on a real Postgres: a runner that gives up many shards at once (as Effect's
 * Sharding does after a rebalance, one fiber per shard) loses none of the shards it keeps.
 * Effect's own storage queues those releases on its one lock connection under a deadline each;
 * the last miss it, the connection is replaced, and closing the old session drops every lock.
 */
import { describe, expect, layer } from "@effect/vitest"
import * as RunnerAddress from "effect/cluster/RunnerAddress"
import type * as RunnerStorage from "effect/cluster/RunnerStorage"
import * as ShardId from "effect/cluster/ShardId"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import * as SqlRunnerStorage from "effect/cluster/SqlRunnerStorage"
import { Effect, Layer, Option, Redacted } from "effect"
import * as LockStorage from "../../src/store/LockStorage.ts"
import * as Store from "../../src/store/Store.ts"
import { freshDatabase } from "../support/database.ts"

const shards = 300
// The deadline of each lock operation: far more than one release takes, far less than all.
const deadline = Number(process.env.SHARDHUB_TEST_LOCK_DEADLINE_MS ?? 100)

const storeLayer = Layer.unwrap(Effect.promise(() => freshDatabase("locks")).pipe(
  Effect.map((url) =>
    ShardingConfig.layer({
      shardsPerGroup: shards,
      shardLockRefreshInterval: `${deadline} millis`,
      shardLockExpiration: "4 seconds"
    }).pipe(
      Layer.provideMerge(Store.layer(
        { databaseUrl: Option.some(Redacted.make(url)), home: "/nonexistent", durable: false, binaryCache: "/nonexistent" },
        { applicationName: "shardhub-test" }
      ))
    )
  )
))

const ids = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ShardId.make("default", from + i))
const sorted = (shardIds: Iterable<ShardId.ShardId>) => [...shardIds].map(String).sort()

/** Effect's storage, or ours when `wrap` is given. */
const storage = (wrap?: typeof LockStorage.oneReleaseAtATime) =>
  Effect.flatMap(SqlRunnerStorage.make({}), (made): Effect.Effect<RunnerStorage.RunnerStorage["Service"]> =>
    wrap === undefined ? Effect.succeed(made) : wrap(made))

describe("shard locks", () => {
  layer(storeLayer, { timeout: 120_000, excludeTestServices: true })((it) => {
    it.effect("a runner that releases 200 of its 300 shards at once keeps the other 100, and only those", () =>
      Effect.gen(function*() {
        const a = RunnerAddress.make("10.0.0.1", 1)
        const b = RunnerAddress.make("10.0.0.2", 1)
        const ours = yield* storage(LockStorage.oneReleaseAtATime)
        const other = yield* storage()
        for (let round = 0; round < 5; round++) {
          expect(sorted(yield* ours.acquire(a, ids(1, shards)))).toEqual(sorted(ids(1, shards)))
          const results = yield* Effect.forEach(ids(1, 200), (shard) => Effect.exit(ours.release(a, shard)), {
            concurrency: "unbounded"
          })
          expect(results.filter((exit) => exit._tag === "Failure")).toEqual([])
          // Nothing it kept was lost…
          expect(sorted(yield* ours.refresh(a, ids(1, shards)))).toEqual(sorted(ids(201, shards)))
          // …and another runner can take exactly what it gave up.
          expect(sorted(yield* other.acquire(b, ids(1, shards)))).toEqual(sorted(ids(1, 200)))
          yield* other.releaseAll(b)
          yield* ours.releaseAll(a)
        }
      }).pipe(Effect.scoped))
  })
})
