/**
 * What a spawn needs before the OS is asked, checked so that a bad spec is a typed error and
 * not an exit status: the working directory, the identity to run as (and that it can reach its
 * directories), the program found like `execvp` would, rlimits through `prlimit`, and the
 * child's data directory (0700, owned by the child's user). Checks of the user's paths run in
 * the thread pool, never on the runner's event loop.
 *
 * @since 0.8.0
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Effect } from "effect"
import * as ChildEnv from "./ChildEnv.ts"
import * as Confinement from "./Confinement.ts"
import { SpawnError } from "./ProcessErrors.ts"
import type { ResolvedSpec } from "./ProcessSpec.ts"

/** @since 0.8.0 */
export interface Plan {
  /** The executable and its argv (through `/bin/sh -c` or `prlimit` where the spec asks). */
  readonly file: string
  readonly argv: ReadonlyArray<string>
  readonly env: Record<string, string>
  readonly identity: Confinement.Identity | undefined
  readonly dataDir: string
}

const isExecutable = (path: string) =>
  Promise.all([Fs.promises.access(path, Fs.constants.X_OK), Fs.promises.stat(path)]).then(
    ([, stat]) => stat.isFile(),
    () => false
  )

/** A plan that failed removes the data directory it made. */
const failed = (dataDir: string, error: SpawnError) => {
  Fs.rmSync(dataDir, { recursive: true, force: true })
  return error
}

/** Finds the program like `execvp` would, so a missing binary is a typed error, not exit 127. */
const locate = async (command: string, cwd: string, pathVariable: string | undefined): Promise<string | SpawnError> => {
  if (command.includes("/")) {
    const path = Path.resolve(cwd, command)
    if (!(await Fs.promises.stat(path).then(() => true, () => false))) {
      return new SpawnError({ reason: "CommandNotFound", message: `${command}: no such file` })
    }
    return (await isExecutable(path)) ? path : new SpawnError({ reason: "PermissionDenied", message: `${command}: not an executable file` })
  }
  for (const dir of (pathVariable ?? "/usr/local/bin:/usr/bin:/bin").split(":")) {
    const path = Path.resolve(cwd, dir || ".", command)
    if (await isExecutable(path)) return path
  }
  return new SpawnError({ reason: "CommandNotFound", message: `${command}: command not found on PATH` })
}

/**
 * The planner of a manager whose state directory is `stateDir`. A PATH search costs an
 * access() per directory; a burst of starts of the same command reuses the answer for a few
 * seconds, still checked to be executable.
 *
 * @since 0.8.0
 */
export const make = (stateDir: string, supervisorToken: string) => {
  const locations = new Map<string, { readonly path: string; readonly at: number }>()
  const located = async (command: string, cwd: string, pathVariable: string | undefined) => {
    if (command.includes("/")) return locate(command, cwd, pathVariable)
    const key = `${cwd}\0${pathVariable}\0${command}`
    const now = Date.now()
    const known = locations.get(key)
    if (known !== undefined && now - known.at < 5000 && (await isExecutable(known.path))) return known.path
    const found = await locate(command, cwd, pathVariable)
    if (typeof found === "string") {
      if (locations.size >= 1000) locations.clear()
      locations.set(key, { path: found, at: now })
    }
    return found
  }

  /**
   * The checks of the user's paths (the working directory, the PATH search) run at once in the
   * thread pool: they may be on a slow or hung mount, which must not stall the runner. The data
   * directory is ours, in the local state directory, and is made in place: a mkdir costs
   * microseconds, less than a thread-pool round trip. It is removed again if the plan fails.
   */
  const plan = async (spec: ResolvedSpec, id: string): Promise<Plan | SpawnError> => {
    const cwd = Path.resolve(spec.cwd ?? process.cwd())
    const dataDir = ChildEnv.dataDirOf(stateDir, id)
    const env = ChildEnv.childEnv(spec, id, dataDir, supervisorToken)
    const identity = Confinement.identity(spec.user, spec.group)
    if (identity instanceof SpawnError) return identity
    const unreachable = identity === undefined ? undefined : Confinement.checkReach(identity, cwd, dataDir)
    if (unreachable !== undefined) return unreachable
    const needsPrlimit = Object.values(spec.rlimits).some((value) => value !== undefined)
    const checks = Promise.all([
      Fs.promises.stat(cwd).then((stat) => stat.isDirectory(), () => false),
      spec.shell ? "/bin/sh" : located(spec.command, cwd, env["PATH"]),
      needsPrlimit ? located("prlimit", cwd, env["PATH"]) : undefined
    ])
    try {
      Fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 })
      if (identity !== undefined) Fs.chownSync(dataDir, identity.uid, identity.gid)
    } catch (error) {
      await checks
      return failed(dataDir, new SpawnError({ reason: "System", message: `cannot create ${dataDir}: ${(error as Error).message}` }))
    }
    const [isDirectory, program, prlimit] = await checks
    if (!isDirectory) {
      return failed(dataDir, new SpawnError({ reason: "BadCwd", message: `working directory ${cwd} does not exist or is not a directory` }))
    }
    if (typeof program !== "string") return failed(dataDir, program)
    const confined = Confinement.withRlimits(
      program,
      spec.shell ? ["-c", spec.command, "sh", ...spec.args] : spec.args,
      spec.rlimits,
      () => prlimit ?? new SpawnError({ reason: "CommandNotFound", message: "prlimit: command not found on PATH" })
    )
    if (confined instanceof SpawnError) return failed(dataDir, confined)
    return { file: confined.file, argv: confined.argv, env, identity, dataDir }
  }

  return {
    /** The plan of `spec` as process `id`, or why it cannot run. */
    plan: (spec: ResolvedSpec, id: string): Effect.Effect<Plan, SpawnError> =>
      Effect.flatMap(Effect.promise(() => plan(spec, id)), (planned) => planned instanceof SpawnError ? Effect.fail(planned) : Effect.succeed(planned))
  }
}
