/**
 * The gateway's files in `$SHARDHUB_HOME`. Plain Node: the CLI reads them before loading any of
 * Effect.
 *
 * - `gateway.json`: where a running gateway of this machine's cluster answers, so that the CLI
 *   can ask it (`Quick.ts`) instead of loading the cluster client. Written by the gateway once it
 *   listens (mode 0600; no secrets: the URL, its pid and which cluster it serves), removed when
 *   it stops.
 * - `gateway.token`: the bearer token of callers that are not the gateway's owner (other users,
 *   other machines) when `SHARDHUB_TOKEN` is not set: made once (0600), kept across restarts.
 *
 * @since 0.6.0
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { ensure as ensureHome, homeOf, isPrivateFile, publishOnce } from "../base/Home.ts"

/**
 * @since 0.6.0
 */
export interface GatewayFile {
  readonly url: string
  readonly pid: number
  /** Which cluster: see {@link cluster}. */
  readonly cluster: string
}

/**
 * The cluster a participant with this environment joins: its `DATABASE_URL`, else the embedded
 * store of its home (hashed: the file holds no password).
 *
 * @since 0.6.0
 */
export const cluster = (env: NodeJS.ProcessEnv): string =>
  Crypto.createHash("sha256").update(env["DATABASE_URL"] ? `url:${env["DATABASE_URL"]}` : `embedded:${homeOf(env)}`).digest("hex")

const fileOf = (home: string) => Path.join(home, "gateway.json")

/** @since 0.6.0 */
export const write = (home: string, file: GatewayFile): void => {
  ensureHome(home)
  const draft = `${fileOf(home)}.${process.pid}`
  Fs.writeFileSync(draft, JSON.stringify(file), { mode: 0o600 })
  Fs.renameSync(draft, fileOf(home))
}

/** Removes the file if it is still `pid`'s. */
export const remove = (home: string, pid: number): void => {
  if (read(home)?.pid === pid) Fs.rmSync(fileOf(home), { force: true })
}

/**
 * The gateway of `home`, if its file is there, this user's and private (another user who could
 * write it would point the CLI, and its token, elsewhere), and its process alive.
 */
export const read = (home: string): GatewayFile | undefined => {
  try {
    if (!isPrivateFile(Fs.statSync(fileOf(home)))) return undefined
    const file = JSON.parse(Fs.readFileSync(fileOf(home), "utf8")) as GatewayFile
    if (typeof file.url !== "string" || typeof file.pid !== "number" || typeof file.cluster !== "string") return undefined
    process.kill(file.pid, 0)
    return file
  } catch {
    return undefined
  }
}

/**
 * The path of the gateway's token file.
 *
 * @since 0.8.0
 */
export const tokenFile = (home: string) => Path.join(home, "gateway.token")

/**
 * The gateway's token from its file, made first if there is none (the first writer wins; every
 * gateway of the home reads the winner's). A file another user owns or could read is refused,
 * not used: it would hand them the gateway.
 *
 * @since 0.8.0
 */
export const ensureToken = (home: string): string => {
  ensureHome(home)
  const path = tokenFile(home)
  publishOnce(path, `${Crypto.randomBytes(32).toString("base64url")}\n`)
  const stat = Fs.lstatSync(path)
  if (!isPrivateFile(stat)) {
    throw new Error(`${path} is not a private file of this user (owner uid ${stat.uid}, mode ${(stat.mode & 0o777).toString(8)}): remove it, or set SHARDHUB_TOKEN`)
  }
  const token = Fs.readFileSync(path, "utf8").trim()
  if (token.length < 16) throw new Error(`${path} holds no usable token (at least 16 characters): remove it, or set SHARDHUB_TOKEN`)
  return token
}

/**
 * The token in the home's token file, if this user may read it and it is private; `undefined`
 * otherwise. Never made here.
 *
 * @since 0.8.0
 */
export const readToken = (home: string): string | undefined => {
  try {
    const path = tokenFile(home)
    if (!isPrivateFile(Fs.statSync(path))) return undefined
    const token = Fs.readFileSync(path, "utf8").trim()
    return token === "" ? undefined : token
  } catch {
    return undefined
  }
}
