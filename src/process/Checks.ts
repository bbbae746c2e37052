/**
 * Checks of a running process from outside (readiness and liveness, see `ProcessSpec.Check`):
 * each try answers `undefined` when it passed, or one line saying why it failed. A try never
 * outlives its timeout: its socket, request or command is destroyed or killed at the deadline.
 *
 * @since 0.9.0
 */
import * as ChildProcess from "node:child_process"
import * as Http from "node:http"
import * as Net from "node:net"
import type { Identity } from "./Confinement.ts"
import type { Check } from "./ProcessSpec.ts"
import { groupKill } from "./Spawner.ts"

/**
 * Where an exec check runs: the process's working directory, environment and user.
 *
 * @since 0.9.0
 */
export interface ExecContext {
  readonly cwd: string | undefined
  readonly env: Record<string, string>
  readonly identity: Identity | undefined
}

/** How much of an exec check's output is kept for the failure line. */
const EXEC_OUTPUT_BYTES = 4096

/**
 * One try of `check`, given `timeoutMs`.
 *
 * @since 0.9.0
 */
export const attempt = (check: Check, timeoutMs: number, exec: ExecContext): Promise<string | undefined> => {
  switch (check._tag) {
    case "Tcp":
      return tcp(check.host ?? "127.0.0.1", check.port, timeoutMs)
    case "Http":
      return http(check.host ?? "127.0.0.1", check.port, check.path ?? "/", timeoutMs)
    case "Exec":
      return command(check.command, check.args ?? [], timeoutMs, exec)
  }
}

/**
 * How `check` reads in a log line or an error.
 *
 * @since 0.9.0
 */
export const describe = (check: Check): string => {
  switch (check._tag) {
    case "Tcp":
      return `tcp ${check.host ?? "127.0.0.1"}:${check.port}`
    case "Http":
      return `http ${check.host ?? "127.0.0.1"}:${check.port}${check.path ?? "/"}`
    case "Exec":
      return `exec ${[check.command, ...(check.args ?? [])].join(" ")}`
  }
}

const tcp = (host: string, port: number, timeoutMs: number) =>
  new Promise<string | undefined>((resolve) => {
    const socket = Net.connect({ host, port })
    const done = (failure: string | undefined) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(failure)
    }
    const timer = setTimeout(() => done(`no connection within ${timeoutMs} ms`), timeoutMs)
    socket.once("connect", () => done(undefined))
    socket.once("error", (error) => done(error.message))
  })

const http = (host: string, port: number, path: string, timeoutMs: number) =>
  new Promise<string | undefined>((resolve) => {
    let settled = false
    const done = (failure: string | undefined) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      request.destroy()
      resolve(failure)
    }
    // A fresh connection per try (no agent): a check measures the server, not a pooled socket.
    const request = Http.get({ host, port, path, agent: false, headers: { "user-agent": "shardhub-check" } }, (response) => {
      const status = response.statusCode ?? 0
      response.resume()
      done(status >= 200 && status < 300 ? undefined : `answered ${status}`)
    })
    const timer = setTimeout(() => done(`no answer within ${timeoutMs} ms`), timeoutMs)
    request.once("error", (error) => done(error.message))
  })

const command = (file: string, args: ReadonlyArray<string>, timeoutMs: number, context: ExecContext) =>
  new Promise<string | undefined>((resolve) => {
    let output = ""
    const child = ChildProcess.spawn(file, [...args], {
      cwd: context.cwd,
      env: context.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
      ...(context.identity === undefined ? {} : { uid: context.identity.uid, gid: context.identity.gid })
    })
    const keep = (chunk: Buffer) => {
      if (output.length < EXEC_OUTPUT_BYTES) output += chunk.toString("utf8", 0, EXEC_OUTPUT_BYTES - output.length)
    }
    child.stdout.on("data", keep)
    child.stderr.on("data", keep)
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      if (child.pid !== undefined) groupKill(child.pid, "SIGKILL")
    }, timeoutMs)
    child.once("error", (error) => {
      clearTimeout(timer)
      resolve(error.message)
    })
    child.once("close", (code, signal) => {
      clearTimeout(timer)
      // What the command left in its group goes with it.
      if (child.pid !== undefined) groupKill(child.pid, "SIGKILL")
      const said = output.trim().split("\n").at(-1)?.slice(0, 200)
      if (timedOut) resolve(`did not exit within ${timeoutMs} ms`)
      else if (code === 0) resolve(undefined)
      else resolve(`${code === null ? `killed by ${signal}` : `exit code ${code}`}${said ? `: ${said}` : ""}`)
    })
  })
