/**
 * Failover in about a second after a crash.
 *
 * Effect's Sharding moves a runner's shards once its heartbeat is older than the shard-lock
 * expiration (4 s by default). A runner that crashed says so much sooner, in two independent
 * ways, and this storage listens for both:
 * - **its store sessions end**: the kernel closes a dead process's sockets, so Postgres ends its
 *   sessions at once (and their advisory shard locks with them). Each runner's connections
 *   carry its address in their application name (`Cluster.runnerApplicationName`);
 * - **its host refuses connections to its runner port**: nothing listens there any more.
 *
 * When both hold, the runner is reported unhealthy, and every participant's next assignment
 * round (every `refreshAssignmentsInterval`) leaves it out: its shards move at once.
 *
 * A runner that only looks dead shows at most one of the two. A frozen runner (SIGSTOP, a VM
 * stall) still accepts connections (the kernel answers for it), and a partitioned one does not
 * answer at all, whatever became of its sessions: both are left to the heartbeat expiry and the
 * fence, as before, so no second copy of an instance ever runs beside one that is only frozen.
 * A runner port that refuses while its process lives means the runner closed its listener,
 * which it does only on the way out, after its shards were released.
 *
 * A drained runner (a row in `shardhub_drains`, see `client/Drain`) is reported unhealthy too,
 * by the same query: every participant then leaves it out of its hash rings, so its shards go
 * to the others and it takes nothing new, while it lives on and hands its processes over at the
 * pace its `Handover` sets (told here, in the same read, before any shard of it is released).
 *
 * Cost: none in store round trips (the session check rides on the runner-list query), and a
 * connection attempt to a runner only while it has no session (at most one per second; a
 * verdict of death is kept until the runner has a session again or leaves the list).
 *
 * @since 0.7.0
 */
import { PersistenceError } from "effect/cluster/ClusterError"
import { Runner } from "effect/cluster/Runner"
import type * as RunnerStorage from "effect/cluster/RunnerStorage"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import { Duration, Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Net from "node:net"

/** How long a connection attempt may take before it counts as "no answer" (not a refusal). */
const probeTimeoutMs = 500
/** How often a runner without a session is probed at most. */
const probeEveryMs = 1000

const key = (runner: Runner) => `${runner.address.host}:${runner.address.port}`

/**
 * Whether `host:port` refuses a TCP connection (`ECONNREFUSED`). An accepted connection, a
 * timeout and any other error are not a refusal.
 *
 * @since 0.7.0
 */
export const refuses = (host: string, port: number): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const socket = Net.connect({ host, port })
    const done = (refused: boolean) => {
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed(refused))
    }
    const timer = setTimeout(() => done(false), probeTimeoutMs)
    socket.once("connect", () => done(false))
    socket.once("error", (error: NodeJS.ErrnoException) => done(error.code === "ECONNREFUSED"))
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

/**
 * `storage` whose `getRunners` reports a runner unhealthy as soon as it is proven dead. It reads
 * the runners (as Effect's `SqlRunnerStorage` does, on its default `cluster_` tables) and, in the
 * same query, whether each has a store session: no more store round trips than before.
 *
 * @since 0.7.0
 */
export const detectingCrashes = (
  storage: RunnerStorage.RunnerStorage["Service"],
  /** Told, on every read, whether this runner (`self`, `host:port`) is drained and at what pace. */
  drained?: { readonly self: string; readonly observe: (parallel: number | undefined) => Effect.Effect<void> }
): Effect.Effect<RunnerStorage.RunnerStorage["Service"], never, SqlClient | ShardingConfig.ShardingConfig> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const config = yield* ShardingConfig.ShardingConfig
    const expiresSeconds = sql.literal(String(Math.ceil(Duration.toSeconds(config.shardLockExpiration))))
    const dead = new Set<string>()
    const probedAt = new Map<string, number>()
    /** Whether a runner without a store session refuses connections (probed at most every `probeEveryMs`). */
    const refusing = (runner: Runner) =>
      Effect.suspend(() => {
        const at = key(runner)
        if (dead.has(at)) return Effect.succeed(true)
        const now = Date.now()
        if (now - (probedAt.get(at) ?? 0) < probeEveryMs) return Effect.succeed(false)
        probedAt.set(at, now)
        return Effect.map(refuses(runner.address.host, runner.address.port), (refused) => {
          if (refused) dead.add(at)
          return refused
        })
      })
    const rows = sql<{
      readonly runner: string
      readonly healthy: boolean
      readonly connected: boolean
      readonly address: string
      readonly drain_parallel: number | null
    }>`
      SELECT r.runner, r.healthy, r.address,
        EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name LIKE '% ' || r.address) AS connected,
        (SELECT d.parallel FROM shardhub_drains d WHERE d.address = r.address) AS drain_parallel
      FROM cluster_runners r
      WHERE r.last_heartbeat > NOW() - INTERVAL '${expiresSeconds} seconds'`.pipe(
      PersistenceError.refail,
      Effect.withTracerEnabled(false)
    )
    return {
      ...storage,
      getRunners: Effect.gen(function*() {
        const found = (yield* rows).map((row) => ({ ...row, drained: row.drain_parallel !== null, runner: Runner.decodeSync(row.runner) }))
        if (drained !== undefined) {
          const self = found.find((row) => row.address === drained.self)
          if (self !== undefined) yield* drained.observe(self.drain_parallel ?? undefined)
        }
        const listed = new Set(found.map((row) => key(row.runner)))
        for (const at of [...dead, ...probedAt.keys()]) {
          if (!listed.has(at)) {
            dead.delete(at)
            probedAt.delete(at)
          }
        }
        return yield* Effect.forEach(found, ({ connected, drained, healthy, runner }) => {
          if (connected) {
            dead.delete(key(runner))
            probedAt.delete(key(runner))
          }
          if (drained) return Effect.succeed([runner, false] as const)
          return healthy && !connected
            ? Effect.map(refusing(runner), (gone) => [runner, !gone] as const)
            : Effect.succeed([runner, healthy] as const)
        }, { concurrency: "unbounded" })
      })
    }
  })
