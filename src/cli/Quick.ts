/**
 * The quick path of the CLI: `ps`, `info ID`, `runners`, `logs ID` and `stop`/`kill`/`restart ID`
 * are asked of the gateway
 * this machine's cluster runs (`shardhub up`; found through `$SHARDHUB_HOME/gateway.json`, or
 * `SHARDHUB_GATEWAY_URL`) over its `/api/shardhub/v1`, and printed exactly as the full CLI prints
 * them — without loading Effect or joining the cluster, which is most of a command's time.
 * Anything else (other flags, a name instead of an id, no gateway, a gateway of another
 * cluster, any error) returns `false` and the full CLI answers.
 *
 * @since 0.6.0
 */
import * as Http from "node:http"
import * as Home from "../base/Home.ts"
import * as GatewayFile from "../http/GatewayFile.ts"
import * as Format from "./Format.ts"

type Quick = "ps" | "info" | "runners" | "logs" | "stop" | "kill" | "restart"
const quick = new Set<string>(["ps", "info", "runners", "logs", "stop", "kill", "restart"])
/** Commands that name one instance. */
const targeted = new Set<string>(["info", "logs", "stop", "kill", "restart"])

interface Parsed {
  readonly command: Quick
  readonly id?: string
  readonly json: boolean
  readonly all: boolean
  readonly follow: boolean
  readonly tail?: number
  readonly timeoutMs?: number
}

/** The command line, if it is one the quick path answers. */
const parse = (args: ReadonlyArray<string>): Parsed | undefined => {
  const [command, ...rest] = args
  if (command === undefined || !quick.has(command)) return undefined
  let json = false
  let all = false
  let follow = false
  let tail: number | undefined
  let timeoutMs: number | undefined
  const positional: Array<string> = []
  const timed = command === "stop" || command === "restart"
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!
    if (arg === "--json" && !timed && command !== "kill") json = true
    else if (arg === "--timeout" && timed && /^\d{1,7}$/.test(rest[i + 1] ?? "")) timeoutMs = Number(rest[++i])
    else if (/^--timeout=\d{1,7}$/.test(arg) && timed) timeoutMs = Number(arg.slice(10))
    else if ((arg === "--all" || arg === "-a") && command === "ps") all = true
    else if ((arg === "--follow" || arg === "-f") && command === "logs") follow = true
    else if (arg === "--tail" && command === "logs" && /^\d{1,6}$/.test(rest[i + 1] ?? "")) tail = Number(rest[++i])
    else if (/^--tail=\d{1,6}$/.test(arg) && command === "logs") tail = Number(arg.slice(7))
    else if (!arg.startsWith("-") && /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(arg)) positional.push(arg)
    else return undefined
  }
  // `all` names every instance: the full CLI resolves it.
  if (positional.length !== (targeted.has(command) ? 1 : 0) || positional[0] === "all") return undefined
  return {
    command: command as Quick,
    json,
    all,
    follow,
    ...(positional[0] === undefined ? {} : { id: positional[0] }),
    ...(tail === undefined ? {} : { tail }),
    ...(timeoutMs === undefined ? {} : { timeoutMs })
  }
}

/** The gateway to ask, if one serves the cluster this environment joins. */
const gateway = (env: NodeJS.ProcessEnv): string | undefined => {
  if (env["SHARDHUB_GATEWAY_URL"]) return env["SHARDHUB_GATEWAY_URL"].replace(/\/api\/v1\/?$/, "").replace(/\/+$/, "")
  const file = GatewayFile.read(Home.homeOf(env))
  return file !== undefined && file.cluster === GatewayFile.cluster(env) ? file.url : undefined
}

/**
 * Asks `path` (GET, or POST with `body`); the body's lines as they come (`onLine`), or
 * `undefined` for anything but a 200.
 */
const ask = (
  base: string,
  path: string,
  env: NodeJS.ProcessEnv,
  options: { readonly onLine?: (line: string) => void; readonly body?: unknown; readonly timeoutMs?: number } = {}
) =>
  new Promise<string | undefined>((resolve) => {
    const { body: payload, onLine } = options
    // The owner needs no token, but one spares the gateway its peer lookup (a few ms).
    const token = env["SHARDHUB_TOKEN"] || GatewayFile.readToken(Home.homeOf(env))
    const request = Http.request(`${base}/api/shardhub/v1${path}`, {
      method: payload === undefined ? "GET" : "POST",
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(payload === undefined ? {} : { "content-type": "application/json" })
      },
      timeout: options.timeoutMs ?? 2000,
      // No keep-alive: the connection must not hold the process once it answered.
      agent: false
    }, (response) => {
      if (response.statusCode !== 200) {
        response.resume()
        return resolve(undefined)
      }
      // A follower waits for lines as long as they come; the rest must answer in time.
      if (onLine !== undefined) request.setTimeout(0)
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => {
        body += chunk
        if (onLine === undefined) return
        let newline: number
        while ((newline = body.indexOf("\n")) >= 0) {
          onLine(body.slice(0, newline))
          body = body.slice(newline + 1)
        }
      })
      // Once answering, what came is the answer (a follower's stream may break off).
      response.on("end", () => resolve(body))
      response.on("error", () => resolve(body))
      response.on("close", () => resolve(body))
    })
    request.on("timeout", () => request.destroy())
    request.on("error", () => resolve(undefined))
    request.end(payload === undefined ? undefined : JSON.stringify(payload))
  })

/** JSON, or `undefined` for a body cut short. */
const parseJson = (body: string | undefined): unknown => {
  if (body === undefined) return undefined
  try {
    return JSON.parse(body)
  } catch {
    return undefined
  }
}

/**
 * Answers `args` through the local gateway; `false` if the full CLI must.
 *
 * @since 0.6.0
 */
export const answer = async (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env): Promise<boolean> => {
  const parsed = parse(args)
  if (parsed === undefined) return false
  const base = gateway(env)
  if (base === undefined) return false
  const write = (text: string) => process.stdout.write(text + "\n")
  switch (parsed.command) {
    case "ps": {
      const instances = parseJson(await ask(base, parsed.all ? "/instances?all=true" : "/instances", env))
      if (!Array.isArray(instances)) return false
      write(parsed.json ? Format.json(instances) : Format.instances(instances))
      return true
    }
    case "info": {
      const record = parseJson(await ask(base, `/instances/${parsed.id}`, env))
      if (typeof record !== "object" || record === null) return false
      write(parsed.json ? Format.json(record) : Format.record(record as never))
      return true
    }
    case "runners": {
      const rows = parseJson(await ask(base, "/runners", env))
      if (!Array.isArray(rows)) return false
      write(parsed.json ? Format.json(rows) : Format.runners(rows))
      return true
    }
    case "logs": {
      // An unknown id (or a name) gets a 404 before any line: the full CLI answers it.
      const query = [parsed.tail === undefined ? undefined : `tail=${parsed.tail}`, parsed.follow ? "follow=true" : undefined]
        .filter((part) => part !== undefined).join("&")
      const line = (text: string) => {
        const entry = parseJson(text)
        if (typeof entry === "object" && entry !== null) write(Format.logLine(entry as never, { json: parsed.json }))
      }
      const rest = await ask(base, `/instances/${parsed.id}/logs${query === "" ? "" : `?${query}`}`, env, { onLine: line })
      if (rest === undefined) return false
      line(rest)
      return true
    }
    case "stop":
    case "kill":
    case "restart": {
      // A name (404 here) is the full CLI's to resolve; an answer cut short leaves it too
      // (stopping twice is harmless).
      const timeoutMs = parsed.timeoutMs ?? 10_000
      const record = parseJson(await ask(base, `/instances/${parsed.id}/${parsed.command}`, env, {
        body: parsed.command === "kill" ? {} : { timeoutMs },
        timeoutMs: timeoutMs + 30_000
      }))
      if (typeof record !== "object" || record === null) return false
      write(parsed.command === "restart" ? Format.restarted(record as never) : Format.outcome(record as never))
      return true
    }
  }
}
