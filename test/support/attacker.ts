/**
 * Another user of this machine: programs run as the unprivileged user `nobody`, the way an
 * attacker who has a shell on the box (or a program confined with `--user nobody`) would run
 * them. Needs root (to switch to `nobody`) and a `nobody` user; `reason` says why not when
 * either is missing, for `it.skipIf`.
 *
 * The attack program is plain CommonJS run by this test's Node binary, linked (or copied) into
 * a directory `nobody` can reach: the checkout may be in a 0700 directory (CI clones into one).
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const passwd = (() => {
  try {
    return Fs.readFileSync("/etc/passwd", "utf8").split("\n").map((line) => line.split(":"))
  } catch {
    return []
  }
})()
const row = passwd.find((fields) => fields[0] === "nobody")

/** `nobody`'s uid and gid, when this process may act as it. */
export const nobody = row !== undefined && process.getuid?.() === 0 ? { uid: Number(row[2]), gid: Number(row[3]) } : undefined

/** Why attacks as `nobody` cannot run here, or `undefined`. */
export const reason = process.getuid?.() !== 0
  ? "needs root, to run the attacker as the user nobody"
  : row === undefined
  ? "this machine has no user nobody"
  : undefined

let place: string | undefined
const workplace = () => {
  if (place !== undefined) return place
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-attacker-"))
  Fs.chmodSync(dir, 0o755)
  const node = Path.join(dir, "node")
  try {
    Fs.linkSync(process.execPath, node)
  } catch {
    Fs.copyFileSync(process.execPath, node)
  }
  Fs.chmodSync(node, 0o755)
  process.once("exit", () => Fs.rmSync(dir, { recursive: true, force: true }))
  place = dir
  return dir
}

export interface Attack {
  readonly child: ChildProcess.ChildProcess
  /** Everything it printed to stdout so far. */
  readonly stdout: () => string
  /** Resolves with its exit code and stdout once it has exited. */
  readonly done: Promise<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }>
}

/**
 * Starts `source` (CommonJS; `process.argv.slice(2)` are `args`) as `nobody`.
 */
export const start = (source: string, args: ReadonlyArray<string> = []): Attack => {
  if (nobody === undefined) throw new Error(`attacks as nobody: ${reason}`)
  const dir = workplace()
  const script = Path.join(dir, `attack-${process.pid}-${Math.random().toString(36).slice(2)}.cjs`)
  Fs.writeFileSync(script, source, { mode: 0o644 })
  const child = ChildProcess.spawn(Path.join(dir, "node"), [script, ...args], {
    uid: nobody.uid,
    gid: nobody.gid,
    cwd: dir,
    env: { PATH: "/usr/bin:/bin", HOME: dir },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once("close", (code) => resolve({ code, stdout, stderr }))
  )
  return { child, stdout: () => stdout, done }
}

/**
 * Runs `source` as `nobody` to its end and returns what it printed last on stdout, parsed as
 * JSON (an attack program reports its outcome as one JSON line).
 */
export const run = async <A = unknown>(source: string, args: ReadonlyArray<string> = []): Promise<A> => {
  const { done } = start(source, args)
  const { code, stdout, stderr } = await done
  const last = stdout.trim().split("\n").at(-1)
  if (last === undefined || last === "") throw new Error(`the attack printed nothing (exit ${code}): ${stderr}`)
  return JSON.parse(last) as A
}

/**
 * A program that sends one HTTP request and prints `{status, body}`: `args` are the URL, the
 * method, the body (or "") and the headers as JSON.
 */
export const httpRequest = `
const [url, method, body, headers] = process.argv.slice(2)
fetch(url, { method, headers: JSON.parse(headers || "{}"), body: body === "" ? undefined : body })
  .then(async (response) => console.log(JSON.stringify({ status: response.status, body: await response.text() })))
  .catch((error) => console.log(JSON.stringify({ status: 0, body: String(error) })))
`

/** Sends one HTTP request as `nobody`. */
export const request = (url: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}) =>
  run<{ readonly status: number; readonly body: string }>(httpRequest, [url, init.method ?? "GET", init.body ?? "", JSON.stringify(init.headers ?? {})])
