/**
 * Fencing: a runner's processes run only while the runner can prove it holds their shards.
 *
 * Another runner may take a shard once its lock expires: `shardLockExpiration` after the
 * holder's last lock refresh (on Postgres the locks belong to the holder's session, which the
 * server ends after that long idle). A runner that is frozen (SIGSTOP, a VM stall, a long GC),
 * cut off from the store, or whose store is gone cannot stop its processes itself, so the
 * ProcessManager's reaper — another process — does: each successful lock refresh renews its
 * fence until `sent + expiration − margin`, and when that passes unrenewed it stops (SIGSTOP)
 * every process of the runner. Stopped processes run no code: no second copy ever runs beside
 * one started elsewhere.
 *
 * When the runner can prove its locks again, it continues the processes whose shards it still
 * holds, one refresh later (so that the refresh that found lost shards has been applied); the
 * processes of lost shards stay stopped until their release kills them. Only a refresh of the
 * shards counts: when lock storage was unhealthy, Effect probes it with a refresh of no shard,
 * and its shard set is stale until a real refresh — a probe that continued the processes let a
 * copy whose shard another runner had taken run again for a moment (the chaos suite saw it
 * after two freezes of one runner in a row). A shard that a refresh found lost since the freeze
 * and that this runner acquired anew is not "still held": another runner may have run its
 * programs meanwhile, so the old process is not continued (the new activation starts its own).
 *
 * The margin is a quarter of the expiration (1 s of the default 4 s): the fence must fire
 * before the lock can expire, and the normal renewal must never miss it. Renewals come every
 * `shardLockRefreshInterval` (at most a third of the expiration) and a refresh slower than that
 * interval already counts as failed, so a healthy runner renews at most two intervals apart:
 * `expiration − margin ≥ 2 × interval` holds whenever interval ≤ 3/8 of the expiration.
 *
 * @since 0.5.0
 */
import type * as RunnerStorage from "effect/cluster/RunnerStorage"
import { Context, Duration, Effect, Layer } from "effect"
import { ProcessManager } from "../process/ProcessManager.ts"

/**
 * @since 0.5.0
 */
export class Fence extends Context.Service<Fence, {
  /**
   * The process `processId` of `owner` (an entity) is continued after a freeze only while
   * `held()` (its shard is still this runner's). Replaces what `owner` guarded before.
   */
  readonly guard: (owner: string, processId: string, shard: string, held: () => boolean) => void
  readonly unguard: (owner: string) => void
  /** Whether the process of `owner` is held stopped by the fence (not continued since). */
  readonly stopped: (owner: string) => boolean
  /**
   * A lock refresh of `proved` shards, sent at `sentAt` (performance.now()), succeeded. A
   * refresh of no shard (Effect's probe of an unhealthy lock storage) proves nothing about the
   * shards of guarded processes: it neither renews the fence nor counts towards a thaw.
   */
  readonly refreshed: (sentAt: number, proved: number) => void
  /** A lock refresh found these shards (`ShardId.toString()`) no longer held. */
  readonly lost: (shards: ReadonlyArray<string>) => void
}>()("shardhub/Fence") {}

/** A guarded process, as the fence knows it. */
interface Guard {
  readonly processId: string
  /** Its shard (`ShardId.toString()`). */
  readonly shard: string
  /** Whether this runner holds its shard now. */
  readonly held: () => boolean
  /** The last freeze stopped it, and it was not continued since. */
  stopped: boolean
  /**
   * A refresh found its shard lost: held again later (acquired anew, after another runner may
   * have run its program), it is not continued. A process started after the loss (the new
   * activation's, guarded anew) is not stale.
   */
  stale: boolean
}

/**
 * The fence of a runner whose shard locks expire after `expiration`.
 *
 * @since 0.5.0
 */
export const layer = (expiration: Duration.Duration) =>
  Layer.effect(
    Fence,
    Effect.gen(function*() {
      const { fencing } = yield* ProcessManager
      const expirationMs = Duration.toMillis(expiration)
      const budgetMs = expirationMs - expirationMs / 4
      const guarded = new Map<string, Guard>()
      // A freeze happened; the next refresh after the one that follows it continues the held.
      let frozen = false
      let thawAtNextRefresh = false
      const services = yield* Effect.context<never>()
      fencing.onFreeze(() => {
        frozen = true
        thawAtNextRefresh = false
        for (const guard of guarded.values()) guard.stopped = true
        Effect.runForkWith(services)(Effect.logWarning(
          "fence: the shard locks were not proven in time (a stall, or the store out of reach); " +
            "every process is stopped until they are proven again"
        ))
      })
      return Fence.of({
        guard: (owner, processId, shard, held) => guarded.set(owner, { processId, shard, held, stopped: false, stale: false }),
        unguard: (owner) => guarded.delete(owner),
        stopped: (owner) => guarded.get(owner)?.stopped === true,
        refreshed: (sentAt, proved) => {
          if (proved === 0 && guarded.size > 0) return
          fencing.renew(sentAt + budgetMs - performance.now())
          if (thawAtNextRefresh) {
            thawAtNextRefresh = false
            for (const guard of guarded.values()) {
              if (!guard.held() || guard.stale) continue
              fencing.thaw(guard.processId)
              guard.stopped = false
            }
          }
          if (frozen) {
            frozen = false
            thawAtNextRefresh = true
          }
        },
        lost: (shards) => {
          if (shards.length === 0) return
          const gone = new Set(shards)
          for (const guard of guarded.values()) if (gone.has(guard.shard)) guard.stale = true
        }
      })
    })
  )

/**
 * `storage` whose successful lock refreshes renew `fence`.
 *
 * @since 0.5.0
 */
export const renewing = (
  storage: RunnerStorage.RunnerStorage["Service"],
  fence: Fence["Service"]
): RunnerStorage.RunnerStorage["Service"] => ({
  ...storage,
  refresh: (address, shardIds) =>
    Effect.suspend(() => {
      const sentAt = performance.now()
      const proved = [...shardIds]
      return Effect.tap(storage.refresh(address, proved), (held) =>
        Effect.sync(() => {
          const kept = new Set(held.map(String))
          fence.lost(proved.map(String).filter((shard) => !kept.has(shard)))
          fence.refreshed(sentAt, proved.length)
        }))
    })
})
