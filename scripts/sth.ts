/**
 * STH 0.18.7 as a benchmark baseline: its host and runner installed from npm on first use, in a
 * directory of their own (`node_modules/.cache/shardhub-bench/sth-0.18.7`) — apart from the
 * 0.26.1 api-client, whose shared `@scramjet/*` packages break the 0.18.7 host when hoisted
 * together — and started with its process adapter on free ports.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { freePorts, root, type Spawned, spawnNode } from "../test/support/processes.ts"

const VERSION = "0.18.7"
const dir = Path.join(root, "node_modules/.cache/shardhub-bench", `sth-${VERSION}`)

/** Installs STH's host and runner once; the reason when it cannot (no registry, say). */
const install = (): string | undefined => {
  if (Fs.existsSync(Path.join(dir, "node_modules/@scramjet/host/package.json"))) return undefined
  Fs.mkdirSync(dir, { recursive: true })
  Fs.writeFileSync(Path.join(dir, "package.json"), JSON.stringify({ private: true }))
  const packages = ["host", "runner", "sth-config"].map((name) => `@scramjet/${name}@${VERSION}`)
  const result = ChildProcess.spawnSync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", ...packages], {
    cwd: dir,
    encoding: "utf8",
    timeout: 300_000
  })
  return result.status === 0 ? undefined : `npm install of STH ${VERSION} failed: ${(result.stderr || result.error?.message || "").trim()}`
}

/** A running STH host (its API base URL), or why there is none. */
export const startSth = async (): Promise<{ readonly url: string; readonly host: Spawned } | { readonly unavailable: string }> => {
  const failed = install()
  if (failed !== undefined) return { unavailable: failed }
  Fs.copyFileSync(Path.join(import.meta.dirname, "sth/start.cjs"), Path.join(dir, "start.cjs"))
  const sequences = Fs.mkdtempSync(Path.join(dir, "sequences-"))
  const port = await freePorts(2)
  const instancesPort = port + 1
  const host = spawnNode("sth", Path.join(dir, "start.cjs"), { args: [String(port), String(instancesPort), sequences] })
  const [, url] = await host.waitFor(/^sth ready (\S+)/m, 60_000)
  return { url: url!, host }
}
