/**
 * How a child is confined beyond its environment: the user and group it runs as, and its
 * resource limits (rlimits).
 *
 * - `user`/`group` (names or numeric ids) switch the child's identity; only a runner running as
 *   root may switch to another user. Supplementary groups are dropped. The child's data
 *   directory is handed to that user.
 * - rlimits are set by `prlimit` (util-linux) exec'ing the program with them: Node cannot call
 *   `setrlimit` for a child, and `prlimit` replaces itself with the program, so the pid, the
 *   process group and signals are the program's own.
 *
 * @since 0.5.0
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { SpawnError } from "./ProcessErrors.ts"
import type { Rlimits } from "./ProcessSpec.ts"

/**
 * The identity a child runs as.
 *
 * @since 0.5.0
 */
export interface Identity {
  readonly uid: number
  readonly gid: number
}

const invalid = (message: string) => new SpawnError({ reason: "InvalidSpec", message })

/** The rows of `/etc/passwd` or `/etc/group`: name, then numeric fields by position. */
const table = (path: string): Array<Array<string>> => {
  try {
    return Fs.readFileSync(path, "utf8").split("\n").filter((line) => line !== "" && !line.startsWith("#")).map((line) => line.split(":"))
  } catch {
    return []
  }
}

/**
 * The entry for `key` in the `passwd` or `group` database: the local file first (no process
 * spawned for the usual case), then every source the system's NSS configuration names
 * (`getent`: LDAP, SSSD, systemd's userdb, …).
 */
const lookup = (database: "passwd" | "group", key: string): Array<string> | undefined => {
  const local = table(`/etc/${database}`).find((fields) => fields[0] === key || (numeric(key) !== undefined && fields[2] === key))
  if (local !== undefined) return local
  try {
    const line = ChildProcess.execFileSync("getent", [database, key], { encoding: "utf8", timeout: 5000 }).split("\n")[0]
    return line === undefined || line === "" ? undefined : line.split(":")
  } catch {
    return undefined
  }
}

const numeric = (text: string) => /^\d+$/.test(text) ? Number(text) : undefined

/**
 * The uid and gid for `user`/`group` (names from the system's user and group databases, or numbers);
 * `undefined` when neither is asked for. A user's own group is the default group.
 *
 * @since 0.5.0
 */
export const identity = (user: string | undefined, group: string | undefined): Identity | SpawnError | undefined => {
  if (user === undefined && group === undefined) return undefined
  const self = { uid: process.getuid!(), gid: process.getgid!() }
  let uid = self.uid
  let gid: number | undefined
  if (user !== undefined) {
    const row = lookup("passwd", user)
    if (row === undefined && numeric(user) === undefined) return invalid(`no such user: ${user}`)
    uid = numeric(row?.[2] ?? user)!
    gid = row === undefined ? undefined : numeric(row[3] ?? "")
  }
  if (group !== undefined) {
    const row = numeric(group) === undefined ? lookup("group", group) : undefined
    const id = row === undefined ? numeric(group) : numeric(row[2] ?? "")
    if (id === undefined) return invalid(`no such group: ${group}`)
    gid = id
  }
  const wanted = { uid, gid: gid ?? self.gid }
  if (self.uid !== 0 && (wanted.uid !== self.uid || wanted.gid !== self.gid)) {
    return new SpawnError({
      reason: "PermissionDenied",
      message: `only a runner running as root can run a process as another user or group (this runner is uid ${self.uid})`
    })
  }
  return wanted
}

/**
 * The first directory on the way to `path` that `who` may not pass through (no search
 * permission for it), or `undefined`. Supplementary groups are not counted: a switched child
 * has none.
 *
 * @since 0.5.0
 */
export const blockedAt = (path: string, who: Identity): string | undefined => {
  if (who.uid === 0) return undefined
  const chain: Array<string> = []
  for (let dir = Path.resolve(path); ; dir = Path.dirname(dir)) {
    chain.unshift(dir)
    if (Path.dirname(dir) === dir) break
  }
  for (const dir of chain) {
    const stat = Fs.statSync(dir, { throwIfNoEntry: false })
    if (stat === undefined) return undefined
    const bit = stat.uid === who.uid ? 0o100 : stat.gid === who.gid ? 0o010 : 0o001
    if ((stat.mode & bit) === 0) return dir
  }
  return undefined
}

/**
 * Fails when `who` cannot reach the directories its process needs: its working directory and
 * the parent of its data directory (which is made and handed over to it).
 *
 * @since 0.5.0
 */
export const checkReach = (who: Identity, cwd: string, dataDir: string): SpawnError | undefined => {
  for (const [what, path] of [["working directory", cwd], ["data directory", Path.dirname(dataDir)]] as const) {
    const blocked = blockedAt(path, who)
    if (blocked !== undefined) {
      return new SpawnError({
        reason: "PermissionDenied",
        message: `uid ${who.uid} cannot reach its ${what} ${path}: ${blocked} is closed to it` +
          (what === "data directory" ? " (put SHARDHUB_HOME or SHARDHUB_RUNNER_STATE_DIR where that user may pass, e.g. not under /root)" : "")
      })
    }
  }
  return undefined
}

const prlimitFlags: Record<keyof Rlimits, string> = { nproc: "--nproc", nofile: "--nofile", core: "--core" }

/**
 * The program and arguments that run `file argv` under `rlimits` (soft and hard), through
 * `prlimit` found at `prlimit`; unchanged when there are none.
 *
 * @since 0.5.0
 */
export const withRlimits = (
  file: string,
  argv: ReadonlyArray<string>,
  rlimits: Rlimits,
  prlimit: () => string | SpawnError
): { readonly file: string; readonly argv: ReadonlyArray<string> } | SpawnError => {
  const flags = (Object.keys(prlimitFlags) as Array<keyof Rlimits>)
    .filter((key) => rlimits[key] !== undefined)
    .map((key) => `${prlimitFlags[key]}=${rlimits[key]}:${rlimits[key]}`)
  if (flags.length === 0) return { file, argv }
  const path = prlimit()
  if (typeof path !== "string") {
    return new SpawnError({ reason: "CommandNotFound", message: `resource limits need prlimit (util-linux) on the runner's PATH: ${path.message}` })
  }
  return { file: path, argv: [...flags, "--", file, ...argv] }
}
