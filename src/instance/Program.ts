/**
 * How an instance's program runs: the ProcessManager spec of a command (as given) or of a
 * sequence (unpacked from the sequence store, under its in-child runner), and the behaviour that
 * differs between the two ({@link Program}): where data goes, what input starts with, when a
 * start is complete, whether a stop can be called off, and how a kill ends it.
 *
 * @since 0.5.0
 */
import { Effect } from "effect"
import * as Path from "node:path"
import type * as Stdio from "../process/Stdio.ts"
import { Security } from "../transport/Security.ts"
import type * as Control from "../process/Control.ts"
import * as Confinement from "../process/Confinement.ts"
import { type KillError, SpawnError } from "../process/ProcessErrors.ts"
import type { ProcessHandle } from "../process/ProcessHandle.ts"
import type { ProcessSpec } from "../process/ProcessSpec.ts"
import type { Terminal } from "../process/ProcessStatus.ts"
import * as Launch from "../sequence/Launch.ts"
import { SequenceStore } from "../sequence/SequenceStore.ts"
import * as HubCredential from "./HubCredential.ts"
import { InvalidSpec, StartFailed } from "./InstanceErrors.ts"
import type { InstanceSpec } from "./InstanceSpec.ts"

/** What every process of an instance gets from its spec, whatever its program. */
const common = (id: string, spec: InstanceSpec) => {
  const { memoryMb: _, ...rlimits } = spec.limits ?? {}
  return {
    ...(Object.keys(rlimits).length === 0 ? {} : { rlimits }),
    ...(spec.limits?.memoryMb === undefined ? {} : { memoryLimitMb: spec.limits.memoryMb }),
    ...(spec.user === undefined ? {} : { user: spec.user }),
    ...(spec.group === undefined ? {} : { group: spec.group }),
    ...(spec.restart === undefined ? {} : { restart: spec.restart }),
    ...(spec.liveness === undefined ? {} : { liveness: spec.liveness }),
    name: spec.name ?? id,
    // The log is named for the instance, so it can be read after the process was let go.
    logName: id,
    stdin: "pipe" as const,
    log: spec.log ?? ["stdout", "stderr"]
  }
}

/**
 * The ProcessManager spec of an instance: a command as given, or a sequence (unpacked from the
 * sequence store into `cacheDir`) under its in-child runner.
 *
 * @since 0.5.0
 */
export const processSpec = (id: string, spec: InstanceSpec, cacheDir: string, epoch: number) =>
  Effect.gen(function*() {
    const program = spec.program
    const env = withEpoch(spec.hub === true ? withHub(spec.env, HubCredential.mint((yield* Security).sign, id)) : spec.env, epoch)
    if (program._tag === "Command") {
      const cwd = program.bundle === undefined ? program.cwd : yield* bundleDir(id, spec, program.bundle, program.cwd, cacheDir)
      return {
        ...common(id, spec),
        command: program.command,
        ...(program.args === undefined ? {} : { args: program.args }),
        ...(program.shell === undefined ? {} : { shell: program.shell }),
        ...(cwd === undefined ? {} : { cwd }),
        ...(spec.stopWith === undefined ? {} : { stopWith: spec.stopWith }),
        ...(spec.readiness === undefined ? {} : { readiness: spec.readiness }),
        env: spec.readiness?._tag === "Message" ? withNodeChannel(env) : env,
        messages: "ndjson"
      } satisfies ProcessSpec
    }
    if (spec.readiness !== undefined) {
      return yield* new InvalidSpec({ message: "readiness: a sequence is ready when its runner loaded it; leave readiness out" })
    }
    const store = yield* SequenceStore
    const unpacked = yield* store.unpacked(program.sequenceId, cacheDir, ownerOf(spec)).pipe(
      Effect.mapError((error) =>
        error._tag === "SequenceNotFound" || error._tag === "PackageError"
          ? new InvalidSpec({ message: error.message })
          : new StartFailed({ id, reason: "SequenceStore", message: error.message })
      )
    )
    const launch = Launch.processSpec(unpacked, program, id)
    return {
      ...common(id, spec),
      ...launch,
      env: { ...env, set: { ...env?.set, ...launch.env?.set } }
    } satisfies ProcessSpec
  })

/**
 * Who owns the copy of a package or bundle a process runs from: a confined process gets a copy
 * it owns (the runner's own copy is 0700). (An identity that cannot be had fails the spawn
 * itself, which says why.)
 */
const ownerOf = (spec: InstanceSpec) => {
  const confined = Confinement.identity(spec.user, spec.group)
  return confined instanceof SpawnError ? undefined : confined
}

/** The directory a bundled command runs in: `cwd` inside the bundle, unpacked in `cacheDir`. */
const bundleDir = (id: string, spec: InstanceSpec, hash: string, cwd: string | undefined, cacheDir: string) =>
  Effect.gen(function*() {
    const store = yield* SequenceStore
    const root = yield* store.unpackedBundle(hash, cacheDir, ownerOf(spec)).pipe(
      Effect.mapError((error) =>
        error._tag === "SequenceStoreError"
          ? new StartFailed({ id, reason: "SequenceStore", message: error.message })
          : new InvalidSpec({ message: error.message })
      )
    )
    const dir = Path.resolve(root, cwd ?? ".")
    if (dir !== root && !dir.startsWith(root + Path.sep)) {
      return yield* new InvalidSpec({ message: `cwd ${JSON.stringify(cwd)} is outside the bundle` })
    }
    return dir
  })

/**
 * The environment with the instance's epoch (`SHARDHUB_EPOCH`): a fencing token for the
 * program's writes elsewhere, strictly greater after every takeover.
 */
const withEpoch = (env: InstanceSpec["env"], epoch: number): NonNullable<InstanceSpec["env"]> => ({
  ...env,
  set: { ...env?.set, SHARDHUB_EPOCH: String(epoch) }
})

/**
 * The environment of an instance whose spec asks for the hub: the gateway this runner knows
 * (`SHARDHUB_GATEWAY_URL`) and the instance's own credential for it.
 */
const withHub = (env: InstanceSpec["env"], token: string | undefined): InstanceSpec["env"] => ({
  ...env,
  set: { ...env?.set, ...Launch.hubUrl(), ...(token === undefined ? {} : { SHARDHUB_HUB_TOKEN: token }) }
})

/**
 * The environment of a command that says when it is ready: Node programs get the message
 * channel as their IPC channel (JSON lines, the channel's own framing), so that
 * `process.send("ready")` works as under PM2's `wait_ready`.
 */
const withNodeChannel = (env: InstanceSpec["env"]): NonNullable<InstanceSpec["env"]> => ({
  ...env,
  set: { ...env?.set, NODE_CHANNEL_FD: "3", NODE_CHANNEL_SERIALIZATION_MODE: "json" }
})

/**
 * What a sequence's input starts with (STH's IN channel preamble): how to decode the rest.
 *
 * @since 0.5.0
 */
export const inputHeader = (contentType: string) => new TextEncoder().encode(`Content-Type: ${contentType}\r\n\r\n`)

/**
 * What differs between a command and a sequence once their process runs.
 *
 * @since 0.6.0
 */
export interface Program {
  /** The handle input a client's or a topic's bytes go to: a sequence's data input, a command's stdin. */
  readonly inputName: Stdio.Input
  /** The handle output its output is: a sequence's data output, a command's stdout. */
  readonly outputName: "stdout" | "output"
  /** What each process's input starts with: a sequence reads how to decode the rest. */
  readonly header: (contentType: string) => Uint8Array | undefined
  /** Completes a start: a sequence takes input once its runner loaded the package. */
  readonly started: (id: string, handle: ProcessHandle) => Effect.Effect<void, StartFailed>
  /** Whether a stop may be called off by the program (a sequence calling `keepAlive`). */
  readonly canKeepAlive: boolean
  /** Ends the process now: a sequence's kill handlers get `graceMs`, then SIGKILL. */
  readonly kill: (handle: ProcessHandle, graceMs: number) => Effect.Effect<Terminal, KillError>
}

const command: Program = {
  inputName: "stdin",
  outputName: "stdout",
  header: () => undefined,
  started: () => Effect.void,
  canKeepAlive: false,
  kill: (handle) => handle.kill
}

const sequence: Program = {
  inputName: "input",
  outputName: "output",
  header: inputHeader,
  started: (id, handle) =>
    handle.ready.pipe(
      Effect.catchTag("NotReady", () =>
        Effect.flatMap(handle.wait, (terminal) =>
          Effect.fail(
            new StartFailed({
              id,
              reason: terminal._tag === "Exited" ? `exit code ${terminal.code}` : terminal._tag,
              message: terminal.crashLog.join("\n") || "the sequence ended before it was ready"
            })
          )))
    ),
  canKeepAlive: true,
  kill: (handle, graceMs) => {
    const kill: Control.ToChild = { $shardhub: "kill" }
    return handle.send(kill).pipe(
      Effect.andThen(handle.wait),
      Effect.timeout(graceMs),
      Effect.ignore,
      Effect.andThen(handle.kill)
    )
  }
}

/**
 * The behaviour of `spec`'s program.
 *
 * @since 0.6.0
 */
export const programOf = (spec: InstanceSpec): Program => spec.program._tag === "Sequence" ? sequence : command
