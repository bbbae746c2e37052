/**
 * `$SHARDHUB_HOME/gateway.json`: where a running gateway of this machine's cluster answers, so
 * that the CLI can ask it (`Quick.ts`) instead of loading the cluster client. Written by the
 * gateway once it listens (mode 0600; no secrets: the URL, its pid and which cluster it serves),
 * removed when it stops. Plain Node: the CLI reads it before loading any of Effect.
 *
 * @since 0.6.0
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { homeOf } from "../cluster/Home.ts"

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
  Fs.mkdirSync(home, { recursive: true, mode: 0o700 })
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
    const stat = Fs.statSync(fileOf(home))
    if (stat.uid !== process.getuid?.() || (stat.mode & 0o077) !== 0) return undefined
    const file = JSON.parse(Fs.readFileSync(fileOf(home), "utf8")) as GatewayFile
    if (typeof file.url !== "string" || typeof file.pid !== "number" || typeof file.cluster !== "string") return undefined
    process.kill(file.pid, 0)
    return file
  } catch {
    return undefined
  }
}
