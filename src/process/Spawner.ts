/**
 * Spawning through the spawner (`spawner.js`): a small helper process that forks and execs the
 * manager's children and hands it their pipes, so the manager's event loop never pays for a
 * fork of its own (large) memory.
 *
 * - A child's pipes arrive as sockets before its exit; `'close'` follows the exit and the close
 *   of every pipe but stdin — Node's own `ChildProcess` semantics.
 * - Spawns are spread over up to 4 helpers ({@link LANES}), each started on first use and again
 *   after it died. A helper that dies takes the exit statuses of its children with it: they are
 *   SIGKILLed by process group and reported as killed, and its spawns in flight fail
 *   (`ESPAWNER`).
 *
 * @since 0.7.0
 */
import * as ChildProcess from "node:child_process"
import { EventEmitter } from "node:events"
import * as Net from "node:net"
import * as Path from "node:path"
import { Effect, type Scope } from "effect"

/**
 * A child spawned through the spawner: what the Launcher needs of Node's `ChildProcess`.
 * Emits `'exit'` (code, signal) and then `'close'`.
 *
 * @since 0.7.0
 */
export interface Child extends EventEmitter {
  readonly pid: number
  /** The manager's end of each of the child's fds that was a pipe (`undefined` elsewhere). */
  readonly stdio: ReadonlyArray<Net.Socket | undefined>
  /** The loopback port of its `"listen"` fd, if it has one. */
  readonly listening: number | undefined
}

/**
 * What a spawn may ask for: Node's spawn options with pipes or nothing on each fd, or (on one
 * fd) `"listen"`: a TCP socket listening on a free port of 127.0.0.1, bound by the spawner before
 * the spawn, of which the child holds the only copy.
 *
 * @since 0.7.0
 */
export interface Options {
  readonly argv0?: string
  readonly cwd?: string
  readonly env: Record<string, string>
  readonly uid?: number
  readonly gid?: number
  readonly detached?: boolean
  readonly stdio: ReadonlyArray<"pipe" | "ignore" | "listen">
  /**
   * The program can start ahead as a spare and be told the rest on its message channel (see
   * `Spares`): the spawn may be served by one started earlier.
   */
  readonly spare?: boolean
}

/**
 * @since 0.7.0
 */
export interface Spawner {
  /** Spawns `file` with `args`; `done` gets the child, or the OS's refusal. */
  readonly spawn: (
    file: string,
    args: ReadonlyArray<string>,
    options: Options,
    done: (result: Child | NodeJS.ErrnoException) => void
  ) => void
}

const spawnerPath = Path.join(import.meta.dirname, "spawner.js")

/**
 * Sends `signal` to a process group; a group that is already gone is not an error.
 *
 * @since 0.6.0
 */
export const groupKill = (pgid: number, signal: NodeJS.Signals): string | undefined => {
  try {
    process.kill(-pgid, signal)
    return undefined
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return code === "ESRCH" ? undefined : `cannot send ${signal} to process group ${pgid}: ${code}`
  }
}

interface Pending {
  readonly done: (result: Child | NodeJS.ErrnoException) => void
  readonly stdio: Array<Net.Socket | undefined>
  readonly handles: Array<[fd: number, handle: unknown]>
  exited: () => void
  child: (EventEmitter & Child) | undefined
  awaited: number
}

interface Reply {
  readonly id: number
  readonly pid?: number
  readonly pipes?: ReadonlyArray<number>
  readonly listening?: number
  readonly fd?: number
  readonly exit?: readonly [number | null, NodeJS.Signals | null]
  readonly error?: { readonly code?: string; readonly message: string; readonly errno?: number; readonly syscall?: string; readonly path?: string }
}

const errorOf = (reply: NonNullable<Reply["error"]>): NodeJS.ErrnoException =>
  Object.assign(new Error(reply.message), {
    ...(reply.code === undefined ? {} : { code: reply.code }),
    ...(reply.errno === undefined ? {} : { errno: reply.errno }),
    ...(reply.syscall === undefined ? {} : { syscall: reply.syscall }),
    ...(reply.path === undefined ? {} : { path: reply.path })
  })

/**
 * Emits `'close'` once the child exited and every pipe but stdin closed; returns what to call
 * after `'exit'` was emitted (so `'close'` comes after every `'exit'` listener ran, as Node's).
 */
const closeWhenDone = (child: EventEmitter, stdio: ReadonlyArray<Net.Socket | undefined>) => {
  let open = 1 // the exit
  const one = () => {
    if (--open === 0) child.emit("close")
  }
  stdio.forEach((socket, fd) => {
    if (socket === undefined || fd === 0) return
    open++
    socket.once("close", one)
  })
  return one
}

/** The child exited: its stdin goes (as Node's does), then `'exit'`, then `'close'` when due. */
const exit = (entry: Pending, code: number | null, signal: NodeJS.Signals | null) => {
  entry.stdio[0]?.destroy()
  entry.child!.emit("exit", code, signal)
  entry.exited()
}

/**
 * One helper process and its IPC channel: the spawns it has under way, and its live children.
 */
const lane = () => {
  let helper: ChildProcess.ChildProcess | undefined
  let closing = false
  let nextId = 0
  const pending = new Map<number, Pending>()
  /** Children whose exit is still to come. */
  const live = new Map<number, Pending>()

  const lost = (from: ChildProcess.ChildProcess) => {
    if (helper === from) helper = undefined
    for (const [id, entry] of pending) {
      pending.delete(id)
      if (entry.child !== undefined) groupKill(entry.child.pid, "SIGKILL")
      for (const [, raw] of entry.handles) (raw as { close(): void }).close()
      entry.done(Object.assign(new Error("the process spawner exited before the spawn completed"), { code: "ESPAWNER" }))
    }
    for (const [id, entry] of live) {
      live.delete(id)
      groupKill(entry.child!.pid, "SIGKILL")
      exit(entry, null, "SIGKILL")
    }
  }

  const onReply = (reply: Reply, handle: unknown) => {
    const entry = pending.get(reply.id) ?? live.get(reply.id)
    if (entry === undefined) return
    if (reply.error !== undefined) {
      pending.delete(reply.id)
      if (pending.size === 0) helper?.channel?.unref()
      return entry.done(errorOf(reply.error))
    }
    if (reply.pid !== undefined) {
      entry.awaited = reply.pipes!.length
      entry.child = Object.assign(new EventEmitter(), { pid: reply.pid, stdio: entry.stdio, listening: reply.listening })
    } else if (reply.fd !== undefined) {
      entry.handles.push([reply.fd, handle])
      entry.awaited--
    } else if (reply.exit !== undefined) {
      live.delete(reply.id)
      return exit(entry, reply.exit[0], reply.exit[1])
    }
    if (entry.awaited === 0 && pending.delete(reply.id)) {
      // Made sockets together, in the tick their listeners are attached: a socket made earlier
      // could read its end (and close) before anyone listens.
      for (const [fd, raw] of entry.handles) {
        // A raw pipe handle (Node's `net.Native`), made a socket as Node makes a child's pipes.
        const socket = new Net.Socket({ handle: raw, readable: fd > 0 } as Net.SocketConstructorOpts)
        socket.on("error", () => {})
        entry.stdio[fd] = socket
      }
      if (pending.size === 0) helper?.channel?.unref()
      live.set(reply.id, entry)
      entry.exited = closeWhenDone(entry.child!, entry.stdio)
      entry.done(entry.child!)
    }
  }

  const start = () => {
    const started = ChildProcess.fork(spawnerPath, [], {
      execArgv: [],
      detached: true,
      stdio: ["ignore", "ignore", "inherit", "ipc"],
      serialization: "json"
    })
    started.on("message", (reply: Reply, handle) => onReply(reply, handle))
    started.on("error", () => {})
    started.once("exit", () => {
      if (!closing) lost(started)
    })
    started.unref()
    started.channel?.unref()
    return started
  }

  const spawner: Spawner = {
    spawn: (file, args, options, done) => {
      helper ??= start()
      const id = nextId++
      pending.set(id, { done, stdio: [], handles: [], exited: () => {}, child: undefined, awaited: -1 })
      helper.channel?.ref()
      helper.send({ id, file, args, options })
    }
  }
  return {
    spawner,
    /** Spawns under way. */
    busy: () => pending.size,
    close: () => {
      closing = true
      helper?.disconnect()
    }
  }
}

/**
 * How many helpers spawns are spread over. Node's IPC sends a handle and then holds every later
 * message on that channel until the receiver acknowledged it, so one channel moves one pipe per
 * turn of the manager's event loop: under a burst of starts on a busy runner (16 at once, 1,000
 * live) a spawn waited ~110 ms for its pipes. A further helper starts only when every one before
 * it has a spawn under way, so sequential starts use one.
 */
const LANES = 4

/**
 * A spawner for the surrounding scope; closing the scope ends its helpers.
 *
 * @since 0.7.0
 */
export const acquire: Effect.Effect<Spawner, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => Array.from({ length: LANES }, lane)),
  (lanes) => Effect.sync(() => lanes.forEach((lane) => lane.close()))
).pipe(Effect.map((lanes): Spawner => ({
  spawn: (file, args, options, done) => {
    // The first idle helper, else the least busy one.
    let chosen = lanes[0]!
    for (const candidate of lanes) {
      if (candidate.busy() === 0) {
        chosen = candidate
        break
      }
      if (candidate.busy() < chosen.busy()) chosen = candidate
    }
    chosen.spawner.spawn(file, args, options, done)
  }
})))
