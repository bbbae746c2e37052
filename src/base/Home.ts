/**
 * `SHARDHUB_HOME`: shardhub's state on this machine (default `~/.shardhub`). Plain Node, so that
 * the CLI's quick path can find the home without loading Effect's configuration.
 *
 * @since 0.6.0
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/** @since 0.6.0 */
export const defaultHome = (): string => Path.join(Os.homedir(), ".shardhub")

/**
 * The home an environment names, resolved as the configuration resolves it.
 *
 * @since 0.6.0
 */
export const homeOf = (env: NodeJS.ProcessEnv): string => Path.resolve(env["SHARDHUB_HOME"] ?? defaultHome())

/**
 * Creates the home if it is missing: 0700, whoever creates it first (a runner, the gateway, the
 * store), so no other user can enter it.
 *
 * @since 0.8.0
 */
export const ensure = (home: string): void => {
  Fs.mkdirSync(home, { recursive: true, mode: 0o700 })
}

/**
 * Why other users could change what is in the home, or `undefined`: the home writable by its
 * group or by others, or owned by another user (not root); a parent directory writable by others
 * without the sticky bit (they could rename the home away and put their own in its place).
 *
 * @since 0.8.0
 */
export const exposure = (home: string): string | undefined => {
  const self = process.getuid?.()
  if (self === undefined) return undefined
  const resolved = Path.resolve(home)
  for (let dir = resolved; ; dir = Path.dirname(dir)) {
    const stat = (() => {
      try {
        return Fs.statSync(dir)
      } catch {
        return undefined
      }
    })()
    if (stat !== undefined) {
      const mode = (stat.mode & 0o7777).toString(8).padStart(4, "0")
      const sticky = (stat.mode & 0o1000) !== 0
      const writable = (stat.mode & 0o022) !== 0
      if (stat.uid !== self && stat.uid !== 0) return `${dir} belongs to uid ${stat.uid}, not to this user (uid ${self})`
      if (writable && (dir === resolved || !sticky)) return `${dir} (mode ${mode}) is writable by other users`
    }
    if (Path.dirname(dir) === dir) return undefined
  }
}

/**
 * Writes `content` to `path` (0600) unless the file exists: the first writer wins, every later
 * one keeps the winner's (a private draft hard-linked into place, so no reader sees half a file).
 *
 * @since 0.8.0
 */
export const publishOnce = (path: string, content: string): void => {
  const draft = `${path}.${process.pid}.${Crypto.randomBytes(4).toString("hex")}`
  Fs.writeFileSync(draft, content, { mode: 0o600 })
  try {
    Fs.linkSync(draft, path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
  } finally {
    Fs.rmSync(draft, { force: true })
  }
}

/**
 * Whether a file is this user's and nobody else's: another user who could write or read it
 * could redirect or impersonate whoever trusts it.
 *
 * @since 0.8.0
 */
export const isPrivateFile = (stat: Fs.Stats): boolean =>
  stat.isFile() && stat.uid === process.getuid?.() && (stat.mode & 0o077) === 0

/**
 * {@link ensure}, and the one-line warning of {@link exposure} if there is one (or of a home
 * that could not be created).
 *
 * @since 0.8.0
 */
export const prepare = (home: string): string | undefined => {
  try {
    ensure(home)
  } catch (error) {
    return `could not create SHARDHUB_HOME ${home}: ${error instanceof Error ? error.message : String(error)}`
  }
  const why = exposure(home)
  return why === undefined ? undefined : `SHARDHUB_HOME ${home} is not private: ${why}; other users could change the cluster's state (chmod go-w, or choose another SHARDHUB_HOME)`
}
