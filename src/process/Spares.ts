/**
 * Spares: programs started ahead, so a start does not wait for the program's own start-up
 * (Node's: ~25–30 ms, most of a sequence's start).
 *
 * A spawn that allows it (`Options.spare`) of `file` with `args` is served by a process started
 * earlier as `file args[0] --spare`, with the same fds, no other identity, and the same
 * environment as far as a program reads it while it starts (`STARTUP`). The spare is then told
 * the rest as one NDJSON line on its message channel (fd 3, `Control.Become`): the rest of its
 * argv, its whole environment and its working directory; from then on it is that process. One
 * spare of each kind is kept: started after the first spawn of that kind and again after each
 * use, killed when the scope closes (and, having no work, it exits when its channel closes). A
 * spare only ever had the start-up part of an environment, so nothing of one instance's
 * environment reaches another's process.
 *
 * @since 0.11.0
 */
import { Effect, type Scope } from "effect"
import type * as Control from "./Control.ts"
import { processState } from "./ProcStats.ts"
import * as Spawner from "./Spawner.ts"

/** The message channel a spare is told what it becomes on. */
const CHANNEL_FD = 3

/**
 * What a program reads of its environment while it starts (Node's options, the loader, OpenSSL,
 * the locale), and the supervisor's tag, which the reaper finds in a process's first environment
 * (`/proc/<pid>/environ`: what a spare is told later is not there).
 */
const STARTUP = /^(NODE_|UV_|OPENSSL_|SSL_CERT_|LD_|MALLOC_|GLIBC_|LANG$|LANGUAGE$|LC_|TZ$|SHARDHUB_SUPERVISOR$)/

/**
 * Whether `pid` still runs (not dead, nor a zombie): a spare killed from outside (the OOM killer)
 * is dead before its exit reaches here, and a start it served would end at once.
 */
const running = (pid: number) => {
  const state = processState(pid)
  return state !== undefined && state !== "Z" && state !== "X"
}

const startupEnv = (env: Record<string, string>): Record<string, string> =>
  Object.fromEntries(Object.entries(env).filter(([key]) => STARTUP.test(key)).sort(([a], [b]) => (a < b ? -1 : 1)))

/**
 * `spawner` with spares in front of it; `close` kills the spares.
 *
 * @since 0.11.0
 */
export const make = (spawner: Spawner.Spawner): Spawner.Spawner & { readonly close: () => void } => {
  const idle = new Map<string, Spawner.Child>()
  const starting = new Set<string>()
  let closed = false

  const refill = (key: string, file: string, first: string, options: Spawner.Options, env: Record<string, string>) => {
    if (closed || idle.has(key) || starting.has(key)) return
    starting.add(key)
    spawner.spawn(file, [first, "--spare"], { ...options, env, cwd: "/", spare: false }, (child) => {
      starting.delete(key)
      if (child instanceof Error) return
      if (closed) return void Spawner.groupKill(child.pid, "SIGKILL")
      idle.set(key, child)
      child.once("exit", () => {
        if (idle.get(key) === child) idle.delete(key)
      })
    })
  }

  return {
    spawn: (file, args, options, done) => {
      const first = args[0]
      if (options.spare !== true || options.uid !== undefined || options.gid !== undefined || first === undefined || options.stdio[CHANNEL_FD] !== "pipe") {
        return spawner.spawn(file, args, options, done)
      }
      const env = startupEnv(options.env)
      const key = JSON.stringify([file, first, options.stdio, options.detached ?? false, options.argv0 ?? null, env])
      const spare = idle.get(key)
      idle.delete(key)
      const channel = spare?.stdio[CHANNEL_FD]
      if (spare !== undefined && channel !== undefined && channel.writable && running(spare.pid)) {
        const become: Control.Become = { $shardhub: "become", args: args.slice(1), env: options.env, cwd: options.cwd ?? process.cwd() }
        channel.write(JSON.stringify(become) + "\n")
        done(spare)
      } else {
        if (spare !== undefined) Spawner.groupKill(spare.pid, "SIGKILL")
        spawner.spawn(file, args, options, done)
      }
      refill(key, file, first, options, env)
    },
    close: () => {
      closed = true
      for (const child of idle.values()) Spawner.groupKill(child.pid, "SIGKILL")
      idle.clear()
    }
  }
}

/**
 * The spawner of `Spawner.acquire` with spares, for the surrounding scope.
 *
 * @since 0.11.0
 */
export const acquire: Effect.Effect<Spawner.Spawner, never, Scope.Scope> = Effect.flatMap(Spawner.acquire, (spawner) =>
  Effect.acquireRelease(Effect.sync(() => make(spawner)), (spares) => Effect.sync(spares.close)))
