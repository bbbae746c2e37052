/**
 * Runner storage whose shard releases run one at a time.
 *
 * Effect's `SqlRunnerStorage` runs every lock operation on one reserved connection, each under
 * a deadline of one lock-refresh interval (1.3 s by default) that starts when the operation is
 * issued, and Effect's `Sharding` releases every shard it gives up in a fiber of its own, at
 * once. When a runner gives up a hundred shards (a rebalance after another runner came back),
 * a hundred releases of two queries each queue on that one connection and the last ones miss
 * their deadline while waiting in the queue. A missed deadline replaces the lock connection,
 * and closing the old session drops *every* advisory lock the runner holds: a healthy runner
 * then loses all its shards, releases them again, and its instances stay down while this
 * repeats. Taken one at a time, each release's deadline covers only its own two queries.
 *
 * @since 0.6.0
 */
import type * as RunnerStorage from "effect/cluster/RunnerStorage"
import { Effect, Semaphore } from "effect"

/**
 * `storage` whose `release` calls run one at a time, in the order they were made.
 *
 * @since 0.6.0
 */
export const oneReleaseAtATime = (
  storage: RunnerStorage.RunnerStorage["Service"]
): Effect.Effect<RunnerStorage.RunnerStorage["Service"]> =>
  Effect.map(Semaphore.make(1), (semaphore) => ({
    ...storage,
    release: (address, shardId) => semaphore.withPermit(storage.release(address, shardId))
  }))
