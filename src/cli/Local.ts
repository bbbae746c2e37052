/**
 * The CLI's long-running commands: `runner` (serve shards), `gateway` (serve HTTP as a client
 * participant), and `up` — a whole local cluster: the cluster store (embedded unless
 * `DATABASE_URL`), N runner processes and the gateway, until Ctrl-C.
 *
 * @since 0.4.0
 */
import { Console, Effect, Layer, Option, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import * as ChildProcess from "node:child_process"
import { fileURLToPath } from "node:url"
import * as Client from "../node/Client.ts"
import { runnerConfig } from "../base/Config.ts"
import { drainCommands } from "./Drain.ts"
import { runnerNodeOptions } from "../base/heap.js"

/** A runner process of `up` failed to start. */
export class RunnerStartError extends Schema.TaggedError<RunnerStartError>()("RunnerStartError", { message: Schema.String }) {}

const main = fileURLToPath(new URL("./main.ts", import.meta.url))

const gatewayPort = Flag.Int("port").pipe(Flag.withDescription("Gateway port (default 8000, or SHARDHUB_GATEWAY_PORT)"), Flag.optional)

// The gateway and the runner are loaded by the commands that run them: the CLI's other commands
// (and --help) do not pay for loading them.
const gatewayLayer = (port: Option.Option<number>) =>
  Layer.unwrap(Effect.gen(function*() {
    const Gateway = yield* Effect.promise(() => import("../http/Gateway.ts"))
    const config = yield* Gateway.gatewayConfig
    return Gateway.layer({ ...config, port: Option.getOrElse(port, () => config.port) })
  }))

/** Prints each line of a child's output with a prefix. */
const prefixLines = (prefix: string, chunk: Buffer, carry: { text: string }, write: (line: string) => void) => {
  carry.text += chunk.toString("utf8")
  const lines = carry.text.split("\n")
  carry.text = lines.pop()!
  for (const line of lines) write(`${prefix} ${line}`)
}

/**
 * A runner child process on `port`; acquired once it printed `ready`, released by SIGTERM (and
 * waiting for it to leave).
 */
const runnerProcess = (index: number, port: number, gatewayUrl: string | undefined) =>
  Effect.acquireRelease(
    Effect.callback<ChildProcess.ChildProcess, RunnerStartError>((resume) => {
      const child = ChildProcess.spawn(process.execPath, [...runnerNodeOptions, main, "runner"], {
        env: {
          ...process.env,
          SHARDHUB_RUNNER_PORT: String(port),
          ...(gatewayUrl === undefined || process.env["SHARDHUB_GATEWAY_URL"] ? {} : { SHARDHUB_GATEWAY_URL: gatewayUrl })
        },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const prefix = `runner-${index} |`
      const out = { text: "" }
      const err = { text: "" }
      let ready = false
      child.stdout!.on("data", (chunk: Buffer) =>
        prefixLines(prefix, chunk, out, (line) => {
          console.log(line)
          if (!ready && /\| ready/.test(line)) {
            ready = true
            resume(Effect.succeed(child))
          }
        }))
      child.stderr!.on("data", (chunk: Buffer) => prefixLines(prefix, chunk, err, (line) => console.error(line)))
      child.once("exit", (code, signal) => {
        if (!ready) resume(Effect.fail(new RunnerStartError({ message: `runner-${index} (port ${port}) exited with ${signal ?? code} before it was ready` })))
      })
      return Effect.sync(() => child.kill("SIGKILL"))
    }),
    (child) =>
      Effect.callback<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGTERM")
      })
  )

const runners = Flag.Int("runners").pipe(Flag.withDescription("How many runner processes (default 1)"), Flag.withDefault(1))

const up = Command.make("up", { runners, port: gatewayPort }, (flags) =>
  Effect.gen(function*() {
    if (flags.runners < 1) return yield* new RunnerStartError({ message: "--runners must be at least 1" })
    const runner = yield* runnerConfig
    // The runners' sequences reach the gateway as `this.hub` (unless its port is chosen at bind).
    const Gateway = yield* Effect.promise(() => import("../http/Gateway.ts"))
    const gateway = yield* Gateway.gatewayConfig
    const gatewayPort = Option.getOrElse(flags.port, () => gateway.port)
    const gatewayUrl = gatewayPort === 0 ? undefined : `http://${Gateway.localHost(gateway.host)}:${gatewayPort}/api/v1`
    // The runners, each on its own port after the first, then the gateway; Ctrl-C stops all.
    yield* Effect.forEach(
      Array.from({ length: flags.runners }, (_, i) => i),
      (i) => runnerProcess(i, runner.port + i, gatewayUrl),
      { concurrency: "unbounded", discard: true }
    )
    yield* Console.log(`shardhub up      ${flags.runners} runner${flags.runners === 1 ? "" : "s"}; Ctrl-C stops the cluster`)
    yield* Layer.launch(gatewayLayer(flags.port))
  }).pipe(
    // The gateway's cluster client; the embedded store starts here first, so the runners find it.
    Effect.provide(Client.layerFromEnv({ applicationName: "shardhub-gateway" })),
    Effect.scoped
  )).pipe(Command.withDescription("Run a local cluster: the cluster store, N runners and the HTTP gateway"))

const runner = Command.make("runner", {
  port: Flag.Int("port").pipe(Flag.withDescription("Runner port (default 34431, or SHARDHUB_RUNNER_PORT)"), Flag.optional),
  label: Flag.String("label").pipe(
    Flag.withDescription("A label instances may require (--on), key=value; repeatable, beside SHARDHUB_RUNNER_LABELS"),
    Flag.atLeast(0)
  )
}, (flags) =>
  Layer.launch(Layer.unwrap(Effect.map(
    Effect.promise(() => import("../node/Runner.ts")),
    (Runner) => Runner.layerFromEnv({ ...Option.match(flags.port, { onNone: () => ({}), onSome: (port) => ({ port }) }), labels: flags.label })
  )))).pipe(
    Command.withDescription("Run a runner: serve shards of the cluster and run their instances (drain, undrain: empty one)"),
    Command.withSubcommands(drainCommands)
  )

const gateway = Command.make("gateway", { port: gatewayPort }, (flags) =>
  Layer.launch(gatewayLayer(flags.port).pipe(Layer.provide(Client.layerFromEnv({ applicationName: "shardhub-gateway" }))))).pipe(
    Command.withDescription("Serve the HTTP gateway (STH's /api/v1) as a client of the cluster")
  )

/**
 * @since 0.4.0
 */
export const localCommands = [up, runner, gateway]

