/**
 * How a sequence runs: its unpacked package under the in-child runner of its engine, with the
 * message channel (fd 3) and the data channels (input fd 4, output fd 5) open.
 *
 * @since 0.4.0
 */
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import type { ProcessSpec } from "../process/ProcessSpec.ts"
import type { SequenceInfo } from "./SequenceStore.ts"

/**
 * The in-child runner scripts.
 *
 * @since 0.4.0
 */
export const runnerScripts = {
  node: fileURLToPath(new URL("./runners/node.cjs", import.meta.url)),
  python3: fileURLToPath(new URL("./runners/python.py", import.meta.url))
} as const

/**
 * What a start of a sequence gives: arguments (default: the package's `args`) and the
 * appConfig (`this.config` / `context.config`).
 *
 * @since 0.4.0
 */
export interface SequenceStart {
  readonly args?: ReadonlyArray<unknown> | undefined
  readonly appConfig?: Readonly<Record<string, unknown>> | undefined
}

/**
 * `SHARDHUB_HUB_URL`: the gateway this runner knows (`SHARDHUB_GATEWAY_URL`, which `shardhub up`
 * sets), for a program that talks to the hub; empty when it knows none.
 *
 * @since 0.8.0
 */
export const hubUrl = (): Record<string, string> => {
  const url = process.env["SHARDHUB_GATEWAY_URL"]
  return url ? { SHARDHUB_HUB_URL: url } : {}
}

/** How long an in-child runner may take to load the package before the start fails. */
const readyTimeoutMs = 30_000

/**
 * The command, environment and channels of a sequence's process (the caller adds name, limits,
 * restart policy and the user's environment).
 *
 * @since 0.4.0
 */
export const processSpec = (
  sequence: { readonly info: SequenceInfo; readonly dir: string },
  start: SequenceStart,
  instanceId: string
): Pick<ProcessSpec, "command" | "args" | "cwd" | "env" | "messages" | "dataChannels" | "prestart" | "listener" | "stopWith" | "readiness"> => {
  const { dir, info } = sequence
  const set: Record<string, string> = {
    SHARDHUB_INSTANCE_ID: instanceId,
    SHARDHUB_SEQUENCE_ARGS: JSON.stringify(start.args ?? info.args),
    SHARDHUB_APP_CONFIG: JSON.stringify(start.appConfig ?? {}),
    // `this.hub` of a Node sequence: the gateway this runner knows, if any.
    ...hubUrl()
  }
  if (info.engine === "python3") {
    set["PYTHONPATH"] = [Path.join(dir, "__pypackages__"), dir, process.env["PYTHONPATH"]].filter(Boolean).join(Path.delimiter)
    set["PYTHONUNBUFFERED"] = "1"
  }
  return {
    command: info.engine === "python3" ? "python3" : process.execPath,
    args: [runnerScripts[info.engine], dir, info.main],
    cwd: dir,
    env: { set },
    messages: "ndjson",
    dataChannels: true,
    // The Node in-child runner starts ahead, as a spare told which sequence it runs.
    prestart: info.engine !== "python3",
    // …and takes a client's data connection itself where it can (see `instance/Direct`).
    listener: info.engine !== "python3",
    stopWith: "message",
    readiness: { _tag: "Message", timeoutMs: readyTimeoutMs }
  }
}
