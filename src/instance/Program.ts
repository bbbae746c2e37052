/**
 * How an instance's program runs: the ProcessManager spec of a command (as given) or of a
 * sequence (unpacked from the sequence store, under its in-child runner), and what a sequence's
 * input starts with.
 *
 * @since 0.5.0
 */
import { Effect } from "effect"
import type { ProcessSpec } from "../process/ProcessSpec.ts"
import * as Launch from "../sequence/Launch.ts"
import { SequenceStore } from "../sequence/SequenceStore.ts"
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
export const processSpec = (id: string, spec: InstanceSpec, cacheDir: string) =>
  Effect.gen(function*() {
    const program = spec.program
    if (program._tag === "Command") {
      return {
        ...common(id, spec),
        command: program.command,
        ...(program.args === undefined ? {} : { args: program.args }),
        ...(program.shell === undefined ? {} : { shell: program.shell }),
        ...(program.cwd === undefined ? {} : { cwd: program.cwd }),
        ...(spec.env === undefined ? {} : { env: spec.env }),
        ...(spec.stopWith === undefined ? {} : { stopWith: spec.stopWith }),
        messages: "ndjson"
      } satisfies ProcessSpec
    }
    const store = yield* SequenceStore
    const unpacked = yield* store.unpacked(program.sequenceId, cacheDir).pipe(
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
      env: { ...spec.env, set: { ...spec.env?.set, ...launch.env?.set } }
    } satisfies ProcessSpec
  })

/**
 * What a sequence's input starts with (STH's IN channel preamble): how to decode the rest.
 *
 * @since 0.5.0
 */
export const inputHeader = (contentType: string) => new TextEncoder().encode(`Content-Type: ${contentType}\r\n\r\n`)

