/**
 * shardhub's configuration, read from environment variables. Every variable has a default that
 * gives a working single-machine cluster on the embedded store; the README lists them all.
 *
 * @since 0.1.0
 */
import { Config, Duration, Option, type Redacted } from "effect"
import * as Path from "node:path"
import { defaultHome } from "./Home.ts"

/**
 * Where the cluster store is.
 *
 * @since 0.1.0
 */
export interface StoreConfig {
  /** `DATABASE_URL`: an external Postgres. None: the embedded one in `home`. */
  readonly databaseUrl: Option.Option<Redacted.Redacted<string>>
  /** `SHARDHUB_HOME`: shardhub's state on this machine (embedded store, process data). */
  readonly home: string
  /** `SHARDHUB_STORE_DURABLE`: fsync in the embedded store (default true). */
  readonly durable: boolean
  /**
   * `SHARDHUB_POSTGRES_BINARIES`: as root, where the embedded store's binaries are published
   * for its `shardhub` user when the checkout is out of that user's reach (default `/var/lib/shardhub`).
   */
  readonly binaryCache: string
}

/**
 * Shard-lock and polling timings. The defaults put failover after a runner crash at about
 * 3 s and ride out store stalls shorter than the refresh interval (Effect's Sharding gives up a
 * runner's shards when a refresh does not finish within it); the README gives the store load
 * they cost.
 *
 * @since 0.1.0
 */
export interface Timings {
  /** A runner whose lock heartbeat is older than this is dead; its shards move. */
  readonly shardLockExpiration: Duration.Duration
  /** How often a runner refreshes its shard locks (and heartbeat). */
  readonly shardLockRefreshInterval: Duration.Duration
  /** How often every participant re-reads the runner list and recomputes assignments. */
  readonly refreshAssignmentsInterval: Duration.Duration
  /** How often a runner polls the store for persisted messages it was not notified of. */
  readonly entityMessagePollInterval: Duration.Duration
  /** How often the runner-health singleton pings the other runners. */
  readonly runnerHealthCheckInterval: Duration.Duration
  /** How long an entity with no request and no keep-alive stays in memory (`SHARDHUB_ENTITY_MAX_IDLE`). */
  readonly entityMaxIdleTime: Duration.Duration
}

/**
 * The default timings (see {@link Timings}).
 *
 * @since 0.1.0
 */
export const defaultTimings: Timings = {
  shardLockExpiration: Duration.seconds(4),
  shardLockRefreshInterval: Duration.millis(1300),
  refreshAssignmentsInterval: Duration.millis(250),
  entityMessagePollInterval: Duration.millis(500),
  runnerHealthCheckInterval: Duration.seconds(5),
  entityMaxIdleTime: Duration.minutes(1)
}

/**
 * A runner's own settings.
 *
 * @since 0.1.0
 */
export interface RunnerConfig {
  /** `SHARDHUB_RUNNER_HOST`: the host other participants dial to reach this runner. */
  readonly host: string
  /** `SHARDHUB_RUNNER_PORT`: its port (default 34431; 0 is not allowed: peers must know it). */
  readonly port: number
  /** `SHARDHUB_RUNNER_LISTEN_HOST`: the interface to listen on, when it differs from `host`. */
  readonly listenHost: Option.Option<string>
  /**
   * `SHARDHUB_RUNNER_STATE_DIR`: where this runner keeps its processes' logs and data
   * directories (default `$SHARDHUB_HOME/runners/<host>-<port>`). One live runner per directory;
   * a runner restarted on it first stops what its previous incarnation left running.
   */
  readonly stateDir: Option.Option<string>
  /**
   * `SHARDHUB_DATA_PORT`: the port of the runner's data port, which carries instance streams
   * (default 0: any free port; clients learn it from the runner).
   */
  readonly dataPort: number
  /**
   * `SHARDHUB_MAX_INSTANCES` (default 2000): instances this runner runs at most; a start beyond
   * it fails with a `Capacity` error instead of running the runner out of memory.
   */
  readonly maxInstances: number
  /** `SHARDHUB_LOG_FILE_SIZE` (default 10 MiB): an instance's log file rotates past this many bytes. */
  readonly logFileBytes: number
  /** `SHARDHUB_LOG_FILES` (default 3): rotated log files kept beside the current one. */
  readonly logKeepFiles: number
  /**
   * `SHARDHUB_METRICS_PORT`: where this runner serves its own Prometheus `/metrics` (unset:
   * not served), on `SHARDHUB_METRICS_HOST` (default 127.0.0.1).
   */
  readonly metrics: Option.Option<{ readonly host: string; readonly port: number }>
  /**
   * `SHARDHUB_RUNNER_LABELS` (`gpu=true,zone=a`; `shardhub runner --label` adds to them): what
   * instances may require of their runner (see `Labels`).
   */
  readonly labels: string
}

/**
 * Transport security of runner ports and data ports (see `Security`).
 *
 * @since 0.5.0
 */
export interface SecurityConfig {
  /**
   * `SHARDHUB_TRANSPORT`: `auto` (default: the cluster key proven with TLS 1.3 between machines,
   * with the loopback handshake on loopback), `tls` (TLS everywhere, loopback too), or `plain`
   * (no authentication; loopback only, to measure the cost).
   */
  readonly mode: "auto" | "tls" | "plain"
  /** `SHARDHUB_KEY_REFRESH`: how often the cluster keys are re-read from the store (default 10 s). */
  readonly keyRefresh: Duration.Duration
  /** `SHARDHUB_HANDSHAKE_TIMEOUT`: a connection that has not completed its handshake by then is closed (default 5 s). */
  readonly handshakeTimeout: Duration.Duration
}

/**
 * @since 0.1.0
 */
export interface ClusterConfig {
  readonly store: StoreConfig
  readonly security: SecurityConfig
  readonly timings: Timings
  /** `SHARDHUB_SHARDS`: shards per group. Must be the same on every participant. */
  readonly shardsPerGroup: number
  /** `SHARDHUB_INSTANCE_RETENTION`: how long an ended instance's record is kept (default 10 minutes). */
  readonly instanceRetention: Duration.Duration
}

const duration = (name: string, fallback: Duration.Duration) =>
  Config.Duration(name).pipe(Config.withDefault(fallback))

/**
 * Reads the store settings.
 *
 * @since 0.1.0
 */
export const storeConfig: Config.Config<StoreConfig> = Config.all({
  databaseUrl: Config.option(Config.Redacted("DATABASE_URL")),
  home: Config.String("SHARDHUB_HOME").pipe(
    Config.withDefault(defaultHome()),
    Config.map((home) => Path.resolve(home))
  ),
  durable: Config.Boolean("SHARDHUB_STORE_DURABLE").pipe(Config.withDefault(true)),
  binaryCache: Config.String("SHARDHUB_POSTGRES_BINARIES").pipe(
    Config.withDefault("/var/lib/shardhub"),
    Config.map((dir) => Path.resolve(dir))
  )
})

/**
 * Reads the timings; each defaults to {@link defaultTimings}.
 *
 * @since 0.1.0
 */
export const timings: Config.Config<Timings> = Config.all({
  shardLockExpiration: duration("SHARDHUB_SHARD_LOCK_EXPIRATION", defaultTimings.shardLockExpiration),
  shardLockRefreshInterval: duration("SHARDHUB_SHARD_LOCK_REFRESH", defaultTimings.shardLockRefreshInterval),
  refreshAssignmentsInterval: duration("SHARDHUB_ASSIGNMENT_POLL", defaultTimings.refreshAssignmentsInterval),
  entityMessagePollInterval: duration("SHARDHUB_MESSAGE_POLL", defaultTimings.entityMessagePollInterval),
  runnerHealthCheckInterval: duration("SHARDHUB_HEALTH_CHECK", defaultTimings.runnerHealthCheckInterval),
  entityMaxIdleTime: duration("SHARDHUB_ENTITY_MAX_IDLE", defaultTimings.entityMaxIdleTime)
})

/**
 * Reads the transport security settings.
 *
 * @since 0.5.0
 */
export const securityConfig: Config.Config<SecurityConfig> = Config.all({
  mode: Config.Literals(["auto", "tls", "plain"], "SHARDHUB_TRANSPORT").pipe(Config.withDefault("auto" as const)),
  keyRefresh: duration("SHARDHUB_KEY_REFRESH", Duration.seconds(10)),
  handshakeTimeout: duration("SHARDHUB_HANDSHAKE_TIMEOUT", Duration.seconds(5))
})

/**
 * Reads the settings every participant shares.
 *
 * @since 0.1.0
 */
export const clusterConfig: Config.Config<ClusterConfig> = Config.all({
  store: storeConfig,
  security: securityConfig,
  timings,
  shardsPerGroup: Config.Int("SHARDHUB_SHARDS").pipe(Config.withDefault(300)),
  instanceRetention: duration("SHARDHUB_INSTANCE_RETENTION", Duration.minutes(10))
})

/**
 * Reads a runner's own settings.
 *
 * @since 0.1.0
 */
export const runnerConfig: Config.Config<RunnerConfig> = Config.all({
  host: Config.String("SHARDHUB_RUNNER_HOST").pipe(Config.withDefault("127.0.0.1")),
  port: Config.Port("SHARDHUB_RUNNER_PORT").pipe(Config.withDefault(34431)),
  listenHost: Config.option(Config.String("SHARDHUB_RUNNER_LISTEN_HOST")),
  stateDir: Config.option(Config.String("SHARDHUB_RUNNER_STATE_DIR").pipe(Config.map((dir) => Path.resolve(dir)))),
  dataPort: Config.Int("SHARDHUB_DATA_PORT").pipe(Config.withDefault(0)),
  maxInstances: Config.Int("SHARDHUB_MAX_INSTANCES").pipe(Config.withDefault(2000)),
  logFileBytes: Config.Int("SHARDHUB_LOG_FILE_SIZE").pipe(Config.withDefault(10 * 1024 * 1024)),
  metrics: Config.all({
    host: Config.String("SHARDHUB_METRICS_HOST").pipe(Config.withDefault("127.0.0.1")),
    port: Config.Int("SHARDHUB_METRICS_PORT")
  }).pipe(Config.option),
  logKeepFiles: Config.Int("SHARDHUB_LOG_FILES").pipe(Config.withDefault(3)),
  labels: Config.String("SHARDHUB_RUNNER_LABELS").pipe(Config.withDefault(""))
})
