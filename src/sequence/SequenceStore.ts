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
import * as Os from "node:os"
import * as Path from "node:path"
import { Context, Effect, Layer, Schema, Stream } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { isSqlError, type SqlError } from "effect/sql/SqlError"
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
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 404
  }
  override get message() {
    return `no sequence with id ${this.id}`
  }
}

/** @since 0.4.0 */
export class SequenceAlreadyExists extends Schema.TaggedError<SequenceAlreadyExists>()("SequenceAlreadyExists", {
  id: Schema.String
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 409
  }
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
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 409
  }
  override get message() {
    return `sequence ${this.id} is used by running instances: ${this.instances.join(", ")}`
  }
}

/** @since 0.4.0 */
export class SequenceStoreError extends Schema.TaggedError<SequenceStoreError>()("SequenceStoreError", {
  message: Schema.String
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 500
  }
}

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
  /** Checks and stores a package streamed from `archive`; `id` defaults to a new UUID. */
  readonly add: <E>(
    archive: Stream.Stream<Uint8Array, E>,
    options?: { readonly id?: string }
  ) => Effect.Effect<SequenceInfo, Package.PackageError | SequenceAlreadyExists | SequenceStoreError | E>
  /**
   * Replaces the package of the sequence `id` with the one streamed from `archive` (STH's
   * `PUT /sequence/:id`); refused while instances of it run.
   */
  readonly replace: <E>(
    id: string,
    archive: Stream.Stream<Uint8Array, E>
  ) => Effect.Effect<SequenceInfo, Package.PackageError | SequenceNotFound | SequenceInUse | SequenceStoreError | E>
  readonly get: (id: string) => Effect.Effect<SequenceInfo, SequenceNotFound | SequenceStoreError>
  /** Every sequence, newest first. */
  readonly list: Effect.Effect<ReadonlyArray<SequenceInfo>, SequenceStoreError>
  /** Deletes a sequence; refused while instances of it run, unless `force`. */
  readonly remove: (
    id: string,
    options?: { readonly force?: boolean }
  ) => Effect.Effect<void, SequenceNotFound | SequenceInUse | SequenceStoreError>
  /**
   * The package of a sequence, unpacked in `cacheDir` (once per content hash), private to the
   * runner's user (0700/0600) — or, for a process confined to another user (`owner`), a copy of
   * its own owned by that user (once per hash and user).
   */
  readonly unpacked: (
    id: string,
    cacheDir: string,
    owner?: { readonly uid: number; readonly gid: number }
  ) => Effect.Effect<{ readonly info: SequenceInfo; readonly dir: string }, SequenceNotFound | Package.PackageError | SequenceStoreError>
  /**
   * Checks and stores a bundle (any directory: the files of a command, `run --bundle`) streamed
   * from `archive`; its id is its content hash, so storing it again changes nothing.
   */
  readonly addBundle: <E>(archive: Stream.Stream<Uint8Array, E>) => Effect.Effect<BundleInfo, Package.PackageError | SequenceStoreError | E>
  /** The bundle of content hash `hash`, unpacked in `cacheDir` as {@link unpacked} does a package. */
  readonly unpackedBundle: (
    hash: string,
    cacheDir: string,
    owner?: { readonly uid: number; readonly gid: number }
  ) => Effect.Effect<string, BundleNotFound | Package.PackageError | SequenceStoreError>
}>()("shardhub/SequenceStore") {}

/**
 * A stored bundle: its content hash (sha256 of the archive, its id) and size in bytes.
 *
 * @since 0.10.0
 */
export const BundleInfo = Schema.Struct({ hash: Schema.String, size: Schema.Number })
/** @since 0.10.0 */
export type BundleInfo = typeof BundleInfo.Type

/** The id of a bundle: the sha256 of its archive, in hex (`InstanceSpec.BundleHash`). */
const bundleHash = /^[0-9a-f]{64}$/

/** @since 0.10.0 */
export class BundleNotFound extends Schema.TaggedError<BundleNotFound>()("BundleNotFound", {
  hash: Schema.String
}) {
  /** The HTTP status the gateway answers it with. */
  get httpStatus(): number {
    return 404
  }
  override get message() {
    return `no bundle ${this.hash} in the cluster store (a bundle unused for the instance retention time is deleted)`
  }
}

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

    /** The archive of `what` (a sequence's package or a bundle) from the store, a 1 MiB row at a time. */
    const archiveOf = (stored: { readonly hash: string; readonly size: number }, what: string) =>
      Stream.range(0, Math.max(1, Math.ceil(stored.size / CHUNK)) - 1).pipe(
        Stream.mapEffect((n) =>
          sql<{ data: Uint8Array }>`SELECT data FROM shardhub_sequence_chunks WHERE hash = ${stored.hash} AND n = ${n}`.pipe(
            Effect.mapError(storeError),
            Effect.flatMap((rows) =>
              rows.length === 1
                ? Effect.succeed(rows[0]!.data)
                : Effect.fail(new SequenceStoreError({ message: `${what} is incomplete in the cluster store` }))
            )
          )
        ),
        Stream.toAsyncIterable
      )

    const sourceError = (cause: unknown) =>
      cause instanceof SequenceStoreError ? cause : new SequenceStoreError({ message: `could not read the package: ${String(cause)}` })

    /**
     * Spools an uploaded archive to a private temporary file (bounded by `maxPackageBytes`),
     * hashing it on the way: the upload is never held in memory.
     */
    const spool = <E>(archive: Stream.Stream<Uint8Array, E>) =>
      Effect.acquireRelease(
        Effect.tryPromise({
          try: () => Fs.promises.mkdtemp(Path.join(Os.tmpdir(), "shardhub-upload-")),
          catch: (error) => new SequenceStoreError({ message: `no room for the upload: ${(error as Error).message}` })
        }),
        (dir) => Effect.promise(() => Fs.promises.rm(dir, { recursive: true, force: true }))
      ).pipe(Effect.flatMap((dir) =>
        Effect.gen(function*() {
          const path = Path.join(dir, "archive")
          const hash = Crypto.createHash("sha256")
          let size = 0
          const handle = yield* Effect.acquireRelease(
            Effect.tryPromise({
              try: () => Fs.promises.open(path, "wx", 0o600),
              catch: (error) => new SequenceStoreError({ message: `no room for the upload: ${(error as Error).message}` })
            }),
            (handle) => Effect.promise(() => handle.close())
          )
          yield* Stream.runForEach(archive, (chunk): Effect.Effect<void, Package.PackageError | SequenceStoreError> => {
            size += chunk.length
            if (size > maxPackageBytes) {
              return Effect.fail(new Package.PackageError({ reason: "TooLarge", message: `the package is over the limit of ${maxPackageBytes} bytes` }))
            }
            hash.update(chunk)
            return Effect.tryPromise({
              try: () => handle.write(chunk),
              catch: (error) => new SequenceStoreError({ message: `could not keep the upload: ${(error as Error).message}` })
            })
          })
          return { path, size, hash: hash.digest("hex") }
        })
      ))

    /** The ids of the instances of sequence `id` that have not ended. */
    const runningOf = (id: string) =>
      sql<{ id: string }>`
        SELECT id FROM shardhub_instances
        WHERE spec->'program'->>'sequenceId' = ${id} AND status NOT IN ('stopped', 'crashed')
        ORDER BY id`.pipe(Effect.map((rows) => rows.map((row) => row.id)))

    /** Deletes the chunks of `hash` unless a sequence or a bundle still names them (in a transaction). */
    const dropUnusedChunks = (hash: string) =>
      sql`DELETE FROM shardhub_sequence_chunks WHERE hash = ${hash}
        AND NOT EXISTS (SELECT 1 FROM shardhub_sequences WHERE hash = ${hash})
        AND NOT EXISTS (SELECT 1 FROM shardhub_bundles WHERE hash = ${hash})`

    /**
     * Checks the package streamed from `archive`, stores its bytes (once per content hash), and
     * runs `write` on it in the same transaction: the sequence row it returns is the answer.
     */
    const store = <E, E2>(
      archive: Stream.Stream<Uint8Array, E>,
      id: string,
      write: (upload: { readonly hash: string; readonly size: number }, manifest: Package.Manifest) => Effect.Effect<ReadonlyArray<Row>, E2 | SqlError>
    ): Effect.Effect<ReadonlyArray<Row>, E | E2 | Package.PackageError | SequenceStoreError> =>
      !validId(id)
        ? Effect.fail(new SequenceStoreError({ message: `invalid sequence id ${JSON.stringify(id)}` }))
        : keep(archive, (path) => Effect.map(Package.check(Fs.createReadStream(path), limits, sourceError), (pkg) => pkg.manifest), write)

    /**
     * Spools `archive`, checks it with `check`, stores its bytes (once per content hash), and
     * runs `write` on it in the same transaction.
     */
    const keep = <E, M, A, E2>(
      archive: Stream.Stream<Uint8Array, E>,
      check: (path: string) => Effect.Effect<M, Package.PackageError | SequenceStoreError>,
      write: (upload: { readonly hash: string; readonly size: number }, checked: M) => Effect.Effect<A, E2 | SqlError>
    ): Effect.Effect<A, E | E2 | Package.PackageError | SequenceStoreError> =>
      Effect.scoped(Effect.gen(function*() {
        const upload = yield* spool(archive)
        const manifest = yield* check(upload.path)
        const file = yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () => Fs.promises.open(upload.path, "r"),
            catch: (error) => new SequenceStoreError({ message: `could not read the upload: ${(error as Error).message}` })
          }),
          (handle) => Effect.promise(() => handle.close())
        )
        const piece = (n: number) =>
          Effect.tryPromise({
            try: async () => {
              const buffer = Buffer.alloc(Math.min(CHUNK, upload.size - n * CHUNK))
              await file.read(buffer, 0, buffer.length, n * CHUNK)
              return buffer
            },
            catch: (error) => new SequenceStoreError({ message: `could not read the upload: ${(error as Error).message}` })
          })
        return yield* sql.withTransaction(Effect.gen(function*() {
          const known = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM shardhub_sequence_chunks WHERE hash = ${upload.hash}`
          if (known[0]!.n === 0) {
            for (let n = 0; n * CHUNK < upload.size || n === 0; n++) {
              const data = yield* piece(n)
              yield* sql`INSERT INTO shardhub_sequence_chunks (hash, n, data) VALUES (${upload.hash}, ${n}, ${data})
                ON CONFLICT DO NOTHING`
            }
          }
          return yield* write(upload, manifest)
        })).pipe(Effect.mapError((error) => isSqlError(error) ? storeError(error) : error as E2 | SequenceStoreError))
      }))

    const fields = (upload: { readonly hash: string; readonly size: number }, manifest: Package.Manifest) => ({
      name: manifest.name ?? null,
      version: manifest.version ?? null,
      engine: manifest.engine,
      main: manifest.main,
      args: JSON.stringify(manifest.args),
      hash: upload.hash,
      size: upload.size
    })

    const add = <E>(archive: Stream.Stream<Uint8Array, E>, id: string) =>
      store<E, never>(archive, id, (upload, manifest) => {
        const row = fields(upload, manifest)
        return sql<Row>`
          INSERT INTO shardhub_sequences (id, name, version, engine, main, args, hash, size)
          VALUES (${id}, ${row.name}, ${row.version}, ${row.engine}, ${row.main}, ${row.args}::jsonb, ${row.hash}, ${row.size})
          ON CONFLICT (id) DO NOTHING
          RETURNING *`
      }).pipe(Effect.flatMap((rows) => rows.length === 0 ? Effect.fail(new SequenceAlreadyExists({ id })) : Effect.succeed(toInfo(rows[0]!))))

    const replace = <E>(id: string, archive: Stream.Stream<Uint8Array, E>) =>
      Effect.andThen(
        get(id),
        store(archive, id, (upload, manifest) =>
          Effect.gen(function*() {
            // The row stays locked while it is checked and replaced.
            const old = yield* sql<{ hash: string }>`SELECT hash FROM shardhub_sequences WHERE id = ${id} FOR UPDATE`
            if (old.length === 0) return yield* new SequenceNotFound({ id })
            const running = yield* runningOf(id)
            if (running.length > 0) return yield* new SequenceInUse({ id, instances: running })
            const row = fields(upload, manifest)
            const replaced = yield* sql<Row>`
              UPDATE shardhub_sequences SET name = ${row.name}, version = ${row.version}, engine = ${row.engine},
                main = ${row.main}, args = ${row.args}::jsonb, hash = ${row.hash}, size = ${row.size}, created_at = now()
              WHERE id = ${id}
              RETURNING *`
            if (old[0]!.hash !== upload.hash) yield* dropUnusedChunks(old[0]!.hash)
            return replaced
          })).pipe(Effect.map((rows) => toInfo(rows[0]!)))
      )

    /**
     * The archive `stored` unpacked in `cacheDir` (once per content hash), private to the runner's
     * user — or, for a process confined to another user (`owner`), a copy of its own owned by
     * that user (once per hash and user).
     */
    const unpackedInto = (
      stored: { readonly hash: string; readonly size: number },
      what: string,
      kind: Package.Kind,
      cacheDir: string,
      owner: { readonly uid: number; readonly gid: number } | undefined
    ) =>
      Effect.gen(function*() {
        const mine = owner === undefined || (owner.uid === process.getuid?.() && owner.gid === process.getgid?.())
        const dir = Path.join(cacheDir, mine ? stored.hash : `${stored.hash}-${owner.uid}-${owner.gid}`)
        if (Fs.existsSync(dir)) return dir
        const temporary = `${dir}.${process.pid}.${Crypto.randomBytes(4).toString("hex")}`
        yield* Effect.try({
          // Passable (a confined process reaches its own copy below), not listable.
          try: () => {
            Fs.mkdirSync(cacheDir, { recursive: true, mode: 0o711 })
            Fs.chmodSync(cacheDir, 0o711)
          },
          catch: (error) => new SequenceStoreError({ message: `package cache ${cacheDir}: ${(error as Error).message}` })
        })
        yield* Package.unpack(archiveOf(stored, what), temporary, limits, sourceError, kind)
        if (!mine) {
          yield* Effect.tryPromise({
            try: () => chownTree(temporary, owner.uid, owner.gid),
            catch: (error) => new SequenceStoreError({ message: `could not hand ${what} to uid ${owner.uid}: ${(error as Error).message}` })
          })
        }
        yield* Effect.sync(() => {
          try {
            Fs.renameSync(temporary, dir)
          } catch {
            // Another runner of this machine unpacked it first.
            Fs.rmSync(temporary, { recursive: true, force: true })
          }
        })
        return dir
      })

    const addBundle = <E>(archive: Stream.Stream<Uint8Array, E>) =>
      keep<E, unknown, BundleInfo, never>(
        archive,
        (path) => Package.checkBundle(Fs.createReadStream(path), limits, sourceError),
        (upload) =>
          Effect.as(
            sql`INSERT INTO shardhub_bundles (hash, size) VALUES (${upload.hash}, ${upload.size})
              ON CONFLICT (hash) DO UPDATE SET used_at = now()`,
            { hash: upload.hash, size: upload.size }
          )
      )

    return SequenceStore.of({
      add: (archive, addOptions) => add(archive, addOptions?.id ?? Crypto.randomUUID()),
      replace,
      get,
      list: sql<Row>`SELECT * FROM shardhub_sequences ORDER BY created_at DESC, id`.pipe(
        Effect.mapError(storeError),
        Effect.map((rows) => rows.map(toInfo))
      ),
      remove: (id, removeOptions) =>
        Effect.gen(function*() {
          const info = yield* get(id)
          if (removeOptions?.force !== true) {
            const running = yield* Effect.mapError(runningOf(id), storeError)
            if (running.length > 0) return yield* new SequenceInUse({ id, instances: running })
          }
          yield* sql.withTransaction(Effect.gen(function*() {
            yield* sql`DELETE FROM shardhub_sequences WHERE id = ${id}`
            yield* dropUnusedChunks(info.hash)
          })).pipe(Effect.mapError(storeError))
        }),
      unpacked: (id, cacheDir, owner) =>
        Effect.flatMap(get(id), (info) =>
          Effect.map(unpackedInto(info, `the package of sequence ${info.id}`, "sequence", cacheDir, owner), (dir) => ({ info, dir }))),
      addBundle,
      unpackedBundle: (hash, cacheDir, owner) =>
        Effect.gen(function*() {
          const rows = !bundleHash.test(hash) ? [] : yield* sql<{ size: string | number }>`
            UPDATE shardhub_bundles SET used_at = now() WHERE hash = ${hash} RETURNING size`.pipe(Effect.mapError(storeError))
          if (rows.length === 0) return yield* new BundleNotFound({ hash })
          return yield* unpackedInto({ hash, size: Number(rows[0]!.size) }, `bundle ${hash}`, "bundle", cacheDir, owner)
        })
    })

  })

/** Hands every entry under `dir` (itself included; symlinks themselves, not their targets) to `uid`:`gid`. */
const chownTree = async (dir: string, uid: number, gid: number) => {
  for (const entry of await Fs.promises.readdir(dir, { recursive: true })) await Fs.promises.lchown(Path.join(dir, entry), uid, gid)
  await Fs.promises.chown(dir, uid, gid)
}

/**
 * @since 0.4.0
 */
export const layer = (options: Options = {}): Layer.Layer<SequenceStore, never, SqlClient> =>
  Layer.effect(SequenceStore, make(options))
