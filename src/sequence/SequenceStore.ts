/**
 * The sequence store: checked packages kept in the cluster store, so that any runner can start
 * any sequence. A sequence row (`shardhub_sequences`) names its package by content hash; the
 * package bytes are kept once per hash, in 1 MiB rows (`shardhub_sequence_chunks`).
 *
 * A runner unpacks a package on first use into a cache directory keyed by its hash (shared by
 * the runners of a machine; unpacked beside it and renamed into place, so a half-written
 * directory is never used).
 *
 * @since 0.4.0
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Package from "./Package.ts"

/**
 * A stored sequence.
 *
 * @since 0.4.0
 */
export const SequenceInfo = Schema.Struct({
  id: Schema.String,
  name: Schema.optionalKey(Schema.String),
  version: Schema.optionalKey(Schema.String),
  engine: Schema.Literals(["node", "python3"]),
  main: Schema.String,
  args: Schema.Array(Schema.Unknown),
  /** sha256 of the package archive. */
  hash: Schema.String,
  /** Bytes of the package archive. */
  size: Schema.Number,
  createdAt: Schema.Number
})
/** @since 0.4.0 */
export type SequenceInfo = typeof SequenceInfo.Type

/** @since 0.4.0 */
export class SequenceNotFound extends Schema.TaggedError<SequenceNotFound>()("SequenceNotFound", {
  id: Schema.String
}) {
  override get message() {
    return `no sequence with id ${this.id}`
  }
}

/** @since 0.4.0 */
export class SequenceAlreadyExists extends Schema.TaggedError<SequenceAlreadyExists>()("SequenceAlreadyExists", {
  id: Schema.String
}) {
  override get message() {
    return `a sequence with id ${this.id} already exists`
  }
}

/**
 * Instances of the sequence are still running (delete with `force` to remove it anyway).
 *
 * @since 0.4.0
 */
export class SequenceInUse extends Schema.TaggedError<SequenceInUse>()("SequenceInUse", {
  id: Schema.String,
  instances: Schema.Array(Schema.String)
}) {
  override get message() {
    return `sequence ${this.id} is used by running instances: ${this.instances.join(", ")}`
  }
}

/** @since 0.4.0 */
export class SequenceStoreError extends Schema.TaggedError<SequenceStoreError>()("SequenceStoreError", {
  message: Schema.String
}) {}

/**
 * @since 0.4.0
 */
export interface Options {
  /** Largest package archive accepted, in bytes (default 256 MiB). */
  readonly maxPackageBytes?: number
  readonly limits?: Package.Limits
}

/**
 * @since 0.4.0
 */
export class SequenceStore extends Context.Service<SequenceStore, {
  /** Checks and stores a package; `id` defaults to a new UUID. */
  readonly add: (
    archive: Uint8Array,
    options?: { readonly id?: string }
  ) => Effect.Effect<SequenceInfo, Package.PackageError | SequenceAlreadyExists | SequenceStoreError>
  readonly get: (id: string) => Effect.Effect<SequenceInfo, SequenceNotFound | SequenceStoreError>
  /** Every sequence, newest first. */
  readonly list: Effect.Effect<ReadonlyArray<SequenceInfo>, SequenceStoreError>
  /** Deletes a sequence; refused while instances of it run, unless `force`. */
  readonly remove: (
    id: string,
    options?: { readonly force?: boolean }
  ) => Effect.Effect<void, SequenceNotFound | SequenceInUse | SequenceStoreError>
  /** The package of a sequence, unpacked in `cacheDir` (once per content hash). */
  readonly unpacked: (
    id: string,
    cacheDir: string
  ) => Effect.Effect<{ readonly info: SequenceInfo; readonly dir: string }, SequenceNotFound | Package.PackageError | SequenceStoreError>
}>()("shardhub/SequenceStore") {}

interface Row {
  readonly id: string
  readonly name: string | null
  readonly version: string | null
  readonly engine: "node" | "python3"
  readonly main: string
  readonly args: ReadonlyArray<unknown>
  readonly hash: string
  readonly size: string | number
  readonly created_at: Date
}

const toInfo = (row: Row): SequenceInfo => ({
  id: row.id,
  ...(row.name === null ? {} : { name: row.name }),
  ...(row.version === null ? {} : { version: row.version }),
  engine: row.engine,
  main: row.main,
  args: row.args,
  hash: row.hash,
  size: Number(row.size),
  createdAt: row.created_at.getTime()
})

const CHUNK = 1024 * 1024

const storeError = (error: SqlError) => new SequenceStoreError({ message: `cluster store: ${error.message}` })

/** A sequence id: what STH uses (UUIDs) and anything path- and URL-safe. */
const validId = (id: string) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id)

/**
 * @since 0.4.0
 */
export const make = (options: Options = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const maxPackageBytes = options.maxPackageBytes ?? 256 * 1024 * 1024
    const limits = options.limits ?? Package.defaultLimits

    const get = (id: string) =>
      // An id that could not have been given is unknown (and never reaches the store).
      !validId(id) ? Effect.fail(new SequenceNotFound({ id })) : sql<Row>`SELECT * FROM shardhub_sequences WHERE id = ${id}`.pipe(
        Effect.mapError(storeError),
        Effect.flatMap((rows) => rows.length === 0 ? Effect.fail(new SequenceNotFound({ id })) : Effect.succeed(toInfo(rows[0]!)))
      )

    const archiveOf = (info: SequenceInfo) =>
      sql<{ data: Uint8Array }>`SELECT data FROM shardhub_sequence_chunks WHERE hash = ${info.hash} ORDER BY n`.pipe(
        Effect.mapError(storeError),
        Effect.map((rows) => Buffer.concat(rows.map((row) => row.data))),
        Effect.filterOrFail(
          (archive) => archive.length === info.size,
          () => new SequenceStoreError({ message: `the package of sequence ${info.id} is incomplete in the cluster store` })
        )
      )

    return SequenceStore.of({
      add: (archive, addOptions) =>
        Effect.gen(function*() {
          const id = addOptions?.id ?? Crypto.randomUUID()
          if (!validId(id)) return yield* new SequenceStoreError({ message: `invalid sequence id ${JSON.stringify(id)}` })
          if (archive.length > maxPackageBytes) {
            return yield* new Package.PackageError({
              reason: "TooLarge",
              message: `the package is ${archive.length} bytes; at most ${maxPackageBytes} are accepted`
            })
          }
          const { manifest } = yield* Package.read(archive, limits)
          const hash = Crypto.createHash("sha256").update(archive).digest("hex")
          const rows = yield* sql.withTransaction(Effect.gen(function*() {
            const known = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM shardhub_sequence_chunks WHERE hash = ${hash}`
            if (known[0]!.n === 0) {
              for (let n = 0; n * CHUNK < archive.length || n === 0; n++) {
                const data = Buffer.from(archive.buffer, archive.byteOffset + n * CHUNK, Math.min(CHUNK, archive.length - n * CHUNK))
                yield* sql`INSERT INTO shardhub_sequence_chunks (hash, n, data) VALUES (${hash}, ${n}, ${data})
                  ON CONFLICT DO NOTHING`
              }
            }
            return yield* sql<Row>`
              INSERT INTO shardhub_sequences (id, name, version, engine, main, args, hash, size)
              VALUES (${id}, ${manifest.name ?? null}, ${manifest.version ?? null}, ${manifest.engine}, ${manifest.main},
                ${JSON.stringify(manifest.args)}::jsonb, ${hash}, ${archive.length})
              ON CONFLICT (id) DO NOTHING
              RETURNING *`
          })).pipe(Effect.mapError(storeError))
          if (rows.length === 0) return yield* new SequenceAlreadyExists({ id })
          return toInfo(rows[0]!)
        }),
      get,
      list: sql<Row>`SELECT * FROM shardhub_sequences ORDER BY created_at DESC, id`.pipe(
        Effect.mapError(storeError),
        Effect.map((rows) => rows.map(toInfo))
      ),
      remove: (id, removeOptions) =>
        Effect.gen(function*() {
          const info = yield* get(id)
          if (removeOptions?.force !== true) {
            const running = yield* sql<{ id: string }>`
              SELECT id FROM shardhub_instances
              WHERE spec->'program'->>'sequenceId' = ${id} AND status NOT IN ('stopped', 'crashed')
              ORDER BY id`.pipe(Effect.mapError(storeError))
            if (running.length > 0) return yield* new SequenceInUse({ id, instances: running.map((row) => row.id) })
          }
          yield* sql.withTransaction(Effect.gen(function*() {
            yield* sql`DELETE FROM shardhub_sequences WHERE id = ${id}`
            yield* sql`DELETE FROM shardhub_sequence_chunks WHERE hash = ${info.hash}
              AND NOT EXISTS (SELECT 1 FROM shardhub_sequences WHERE hash = ${info.hash})`
          })).pipe(Effect.mapError(storeError))
        }),
      unpacked: (id, cacheDir) =>
        Effect.gen(function*() {
          const info = yield* get(id)
          const dir = Path.join(cacheDir, info.hash)
          if (Fs.existsSync(dir)) return { info, dir }
          const pkg = yield* Package.read(yield* archiveOf(info), limits)
          const temporary = `${dir}.${process.pid}.${Crypto.randomBytes(4).toString("hex")}`
          yield* Effect.try({
            try: () => Fs.mkdirSync(cacheDir, { recursive: true }),
            catch: (error) => new SequenceStoreError({ message: `sequence cache ${cacheDir}: ${(error as Error).message}` })
          })
          yield* Package.unpack(pkg, temporary)
          yield* Effect.sync(() => {
            try {
              Fs.renameSync(temporary, dir)
            } catch {
              // Another runner of this machine unpacked it first.
              Fs.rmSync(temporary, { recursive: true, force: true })
            }
          })
          return { info, dir }
        })
    })
  })

/**
 * @since 0.4.0
 */
export const layer = (options: Options = {}): Layer.Layer<SequenceStore, never, SqlClient> =>
  Layer.effect(SequenceStore, make(options))
