/**
 * `SHARDHUB_HOME`: shardhub's state on this machine (default `~/.shardhub`). Plain Node, so that
 * the CLI's quick path can find the home without loading Effect's configuration.
 *
 * @since 0.6.0
 */
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
