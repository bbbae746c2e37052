/**
 * Schema migrations for shardhub's own tables in the cluster store, run through `effect/sql`'s
 * Migrator (history in `shardhub_migrations`; Postgres serialises concurrent runs with a table
 * lock, so every process may migrate on start). Effect's cluster tables migrate themselves.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import * as Migrator from "effect/sql/Migrator"
import { SqlClient } from "effect/sql/SqlClient"

const migrations = {
  /**
   * One row per entity activation: which runner (and runner pid) hosted an entity, from when to
   * when. The audit trail behind "one live copy": no two activations of an entity may overlap.
   */
  "1_activations": Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE shardhub_activations (
      id bigserial PRIMARY KEY,
      entity_type text NOT NULL,
      entity_id text NOT NULL,
      runner text NOT NULL,
      runner_pid integer NOT NULL,
      started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      ended_at timestamptz
    )`
    yield* sql`CREATE INDEX shardhub_activations_entity ON shardhub_activations (entity_type, entity_id, started_at)`
  }),
  /**
   * The instance registry: one row per instance, kept after its process ended. `start_key`
   * makes a re-delivered start idempotent; `epoch` fences out a runner that lost the instance.
   */
  "2_instances": Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE shardhub_instances (
      id text PRIMARY KEY,
      name text,
      spec jsonb NOT NULL,
      start_key text NOT NULL,
      desired text NOT NULL,
      status text NOT NULL,
      runner text,
      pid integer,
      epoch bigint NOT NULL DEFAULT 0,
      restarts integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      started_at timestamptz,
      ended_at timestamptz,
      exit_code integer,
      signal text,
      reason text,
      crash_log jsonb NOT NULL DEFAULT '[]'
    )`
    yield* sql`CREATE INDEX shardhub_instances_ended ON shardhub_instances (ended_at) WHERE ended_at IS NOT NULL`
  }),
  /**
   * The sequence store: one row per sequence, naming its package by content hash; the package
   * bytes once per hash, in 1 MiB chunks.
   */
  "3_sequences": Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE shardhub_sequences (
      id text PRIMARY KEY,
      name text,
      version text,
      engine text NOT NULL,
      main text NOT NULL,
      args jsonb NOT NULL DEFAULT '[]',
      hash text NOT NULL,
      size bigint NOT NULL,
      created_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )`
    yield* sql`CREATE TABLE shardhub_sequence_chunks (
      hash text NOT NULL,
      n integer NOT NULL,
      data bytea NOT NULL,
      PRIMARY KEY (hash, n)
    )`
    yield* sql`CREATE INDEX shardhub_instances_sequence ON shardhub_instances ((spec->'program'->>'sequenceId'))`
  }),
  /**
   * The cluster keys: the pre-shared keys of the runner and data ports' TLS (see `Security`).
   * Several may be active during a rotation; a retired key is refused.
   */
  "4_cluster_keys": Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE shardhub_cluster_keys (
      id text PRIMARY KEY,
      secret bytea NOT NULL CHECK (length(secret) >= 32),
      created_at timestamptz NOT NULL DEFAULT now(),
      retired_at timestamptz
    )`
  }),
  /**
   * Topics known to the cluster: created through the API, published to, or wired to an
   * instance (by its spec or a sequence's declaration). A topic itself needs no row; the rows
   * are what `GET /topics` lists beside the topics of live instances.
   */
  "5_topics": Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE shardhub_topics (
      name text PRIMARY KEY,
      content_type text NOT NULL,
      origin text NOT NULL CHECK (origin IN ('api', 'publish', 'instance')),
      created_at timestamptz NOT NULL DEFAULT now()
    )`
  }),
  /** A scheduled instance's next tick: a tick due at another time is a stray and is dropped. */
  "6_schedules": Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`ALTER TABLE shardhub_instances ADD COLUMN next_tick_at timestamptz`
  }),
  /**
   * Drained runners: every participant's runner list reports them unhealthy, so their shards go
   * to the others and they take nothing new; `parallel` is how many instances move at once.
   */
  "7_drains": Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE shardhub_drains (
      address text PRIMARY KEY,
      parallel integer NOT NULL CHECK (parallel BETWEEN 1 AND 1000),
      since timestamptz NOT NULL DEFAULT now()
    )`
  }),
  /**
   * Bundles: the directories of commands (`run --bundle`), by content hash; their bytes are kept
   * in `shardhub_sequence_chunks` beside the sequences' packages.
   */
  "8_bundles": Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE shardhub_bundles (
      hash text PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
      size bigint NOT NULL,
      used_at timestamptz NOT NULL DEFAULT now()
    )`
  }),
  /**
   * Placement groups: one shard group per label requirement, named `p` and its number in four
   * digits (`name`, the one place that says so; see `instance/PlacementGroups`); the table only grows.
   */
  "9_placement_groups": Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE shardhub_placement_groups (
      n integer PRIMARY KEY CHECK (n BETWEEN 1 AND 1000),
      name text GENERATED ALWAYS AS ('p' || lpad(n::text, 4, '0')) STORED,
      requirement text NOT NULL UNIQUE CHECK (requirement <> '')
    )`
  }),
  /**
   * Durable topics (see `topic/Durable`): their chunks, numbered per topic, and where each
   * consumer stands.
   */
  "10_durable_topics": Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`ALTER TABLE shardhub_topics ADD COLUMN durable boolean NOT NULL DEFAULT false`
    yield* sql`ALTER TABLE shardhub_topics ADD COLUMN next_n bigint NOT NULL DEFAULT 0`
    yield* sql`CREATE TABLE shardhub_topic_log (
      topic text NOT NULL,
      n bigint NOT NULL,
      producer text NOT NULL,
      batch bigint NOT NULL,
      data bytea NOT NULL,
      PRIMARY KEY (topic, n)
    )`
    yield* sql`CREATE INDEX shardhub_topic_log_batch ON shardhub_topic_log (topic, producer, batch)`
    yield* sql`CREATE TABLE shardhub_topic_cursors (
      topic text NOT NULL,
      consumer text NOT NULL,
      n bigint NOT NULL,
      PRIMARY KEY (topic, consumer)
    )`
  }),
  /**
   * The instances that should have a process (see `Registry.toRun`, read by every runner every
   * few seconds): found without reading the ended ones kept for their retention time.
   */
  "11_instances_to_run": Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`CREATE INDEX shardhub_instances_to_run ON shardhub_instances (id)
      WHERE desired = 'running' AND status IN ('pending', 'starting', 'running', 'stopping')`
  })
}

/**
 * Applies every pending migration.
 *
 * @since 0.1.0
 */
export const run = Migrator.make({})({
  loader: Migrator.fromRecord(migrations),
  table: "shardhub_migrations"
})
