/**
 * The cluster store: one `SqlClient` (Postgres) for Effect's runner and message storage and for
 * shardhub's own tables. `DATABASE_URL` picks an external Postgres; without it the embedded one
 * under `SHARDHUB_HOME` is found or started (see `EmbeddedPostgres`).
 *
 * @since 0.1.0
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Option, Redacted, Schema } from "effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import { SqlClient } from "effect/sql/SqlClient"
import { type StoreConfig, storeConfig } from "../base/Config.ts"
import * as EmbeddedPostgres from "./EmbeddedPostgres.ts"
import * as Migrations from "./migrations.ts"
import * as ScramOnly from "./ScramOnly.ts"

/**
 * The store could not be reached, created or migrated.
 *
 * @since 0.1.0
 */
export class StoreError extends Schema.TaggedError<StoreError>()("StoreError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * What this process is connected to.
 *
 * @since 0.1.0
 */
export class Store extends Context.Service<Store, {
  /** The connection URL with its password masked, for display. */
  readonly displayUrl: string
  /** The embedded server, when this process uses the embedded store. */
  readonly embedded: Option.Option<EmbeddedPostgres.Server>
}>()("shardhub/store/Store") {}

/** Name of the database shardhub uses inside the embedded server. */
const embeddedDatabase = "shardhub"

/**
 * Masks the password of a Postgres URL.
 *
 * @since 0.1.0
 */
export const displayUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.toString()
  } catch {
    return "<unparseable DATABASE_URL>"
  }
}

const storeError = (message: string) => (cause: unknown) =>
  new StoreError({ message: `${message}: ${describeCause(cause)}`, cause })

/** The messages along an error's cause chain, outermost first ("…: connect ECONNREFUSED 127.0.0.1:5432"). */
const describeCause = (cause: unknown): string => {
  const messages: Array<string> = []
  for (let current = cause; current instanceof Error && messages.length < 5; current = current.cause) {
    if (!messages.includes(current.message)) messages.push(current.message)
  }
  return messages.length > 0 ? messages.join(": ") : String(cause)
}

/**
 * How this process connects to `url`: through {@link ScramOnly.connection}, so that no server
 * is sent the password in cleartext or as MD5 (a TLS URL connects as it says).
 */
const connectionOptions = (url: Redacted.Redacted<string>) => {
  const target = ScramOnly.targetOf(Redacted.value(url))
  return { url, ...(target === undefined ? {} : { stream: () => ScramOnly.connection(target) }) }
}

/** A short-lived single connection, for administrative statements. */
const withAdminClient = <A>(url: Redacted.Redacted<string>, f: (client: PgClient.PgClient) => Effect.Effect<A, unknown>) =>
  Effect.scoped(
    PgClient.makeClient({ ...connectionOptions(url), applicationName: "shardhub-admin", connectTimeout: "5 seconds" }).pipe(
      Effect.flatMap(f)
    )
  ).pipe(Effect.provide(Reactivity.layer))

/**
 * Creates `database` on the server reached through `adminUrl` unless it exists. Safe to race.
 *
 * @since 0.1.0
 */
export const ensureDatabase = (adminUrl: Redacted.Redacted<string>, database: string) =>
  withAdminClient(adminUrl, (sql) =>
    Effect.gen(function*() {
      const exists = sql`SELECT 1 FROM pg_database WHERE datname = ${database}`.pipe(
        Effect.map((rows) => rows.length > 0)
      )
      if (yield* exists) return
      yield* sql`CREATE DATABASE ${sql(database)}`.pipe(
        // Another process may have created it first.
        Effect.catch((error) => Effect.flatMap(exists, (created) => created ? Effect.void : Effect.fail(error)))
      )
    })).pipe(Effect.mapError(storeError(`could not create the database ${database}`)))

const countOtherClients = (server: EmbeddedPostgres.Server) =>
  withAdminClient(EmbeddedPostgres.url(server, "postgres"), (sql) =>
    sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`.pipe(Effect.map((rows) => rows[0]?.n ?? 0)))

/**
 * Finds or starts the embedded server for `config` and makes sure shardhub's database exists.
 * The server is stopped when the scope closes, unless another client is still connected.
 *
 * @since 0.1.0
 */
export const acquireEmbedded = (config: StoreConfig) =>
  EmbeddedPostgres.acquire(
    { home: config.home, durable: config.durable, binaryCache: config.binaryCache },
    countOtherClients
  ).pipe(
    Effect.tap((server) => ensureDatabase(EmbeddedPostgres.url(server, "postgres"), embeddedDatabase))
  )

/**
 * The store layer: `PgClient`/`SqlClient` on the configured Postgres, shardhub's migrations
 * applied, and `Store` describing the connection. `applicationName` shows up in
 * `pg_stat_activity` (e.g. `shardhub-runner`).
 *
 * Every participant keeps at least one connection open: that is how the embedded store knows it
 * is still in use.
 *
 * @since 0.1.0
 */
export const layer = (config: StoreConfig, options: { readonly applicationName: string }) =>
  Layer.effectContext(
    Effect.gen(function*() {
      const embedded = Option.isSome(config.databaseUrl)
        ? Option.none<EmbeddedPostgres.Server>()
        : Option.some(yield* acquireEmbedded(config))
      const url = Option.match(embedded, {
        onNone: () => Option.getOrThrow(config.databaseUrl),
        onSome: (server) => EmbeddedPostgres.url(server, embeddedDatabase)
      })
      const client = yield* PgClient.make({
        ...connectionOptions(url),
        applicationName: options.applicationName,
        minConnections: 1,
        connectTimeout: "5 seconds"
      })
      // The pool connects lazily: try it now, so that an unreachable store is named as such.
      yield* client`SELECT 1`.pipe(
        Effect.mapError(storeError(`could not connect to the cluster store at ${displayUrl(Redacted.value(url))}`))
      )
      yield* Migrations.run.pipe(
        Effect.provideService(SqlClient, client),
        Effect.mapError(storeError("could not migrate the cluster store"))
      )
      return Context.make(PgClient.PgClient, client).pipe(
        Context.add(SqlClient, client),
        Context.add(Store, Store.of({ displayUrl: displayUrl(Redacted.value(url)), embedded }))
      )
    })
  ).pipe(Layer.provide(Reactivity.layer))

/**
 * {@link layer} with the store settings read from the environment.
 *
 * @since 0.1.0
 */
export const layerFromEnv = (options: { readonly applicationName: string }) =>
  Layer.unwrap(Effect.map(storeConfig, (config) => layer(config, options)))
