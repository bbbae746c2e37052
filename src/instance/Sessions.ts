/**
 * The data-port sessions of an instance: a client's bytes into a process, a process's output to
 * a client, and which of them an `Open` request gets.
 *
 * @since 0.5.0
 */
import { Effect } from "effect"
import type * as Stdio from "../process/Stdio.ts"
import type * as Net from "node:net"
import type { ProcessHandle } from "../process/ProcessHandle.ts"
import { DataPortError } from "./DataPort.ts"
import type { ByteStream } from "./InstanceSpec.ts"
import { headerFor, type Incarnation } from "./Incarnation.ts"
import * as InstanceMetrics from "../metrics/InstanceMetrics.ts"

/**
 * Pipes a socket's bytes into a process's stdin or data input; answers `DONE` or
 * `ERR <reason>` when done (unless `answer` is false: an `inout` socket carries output).
 *
 * @since 0.5.0
 */
export const inputSession = (
  handle: ProcessHandle,
  name: Stdio.Input,
  end: boolean,
  answer: boolean,
  header: () => Uint8Array | undefined = () => undefined
) =>
(socket: Net.Socket) =>
  Effect.flatMap(InstanceMetrics.byteTally("in"), (tally) =>
    handle.pipeInput(name, socket, {
      end,
      header: header(),
      read: tally.add,
      onError: (error) => new DataPortError({ message: `the input connection broke: ${(error as Error)?.message ?? String(error)}` })
    }).pipe(
      Effect.ensuring(tally.flush),
      Effect.matchEffect({
        onFailure: (error) => Effect.sync(() => answer && socket.end(`ERR ${error.message}\n`)),
        onSuccess: () => Effect.sync(() => answer && socket.end("DONE\n"))
      })
    ))

/**
 * Pipes a process output into a socket, ending it when the output ends (an `inout` client
 * learns the process ended while its input may still be open).
 *
 * @since 0.5.0
 */
export const outputSession = (
  pipe: (socket: Net.Socket, written: (bytes: number) => void) => Effect.Effect<void>
) =>
(socket: Net.Socket) =>
  Effect.flatMap(InstanceMetrics.byteTally("out"), (tally) =>
    pipe(socket, tally.add).pipe(
      Effect.andThen(Effect.sync(() => socket.end())),
      Effect.ensuring(tally.flush)
    ))

/**
 * The session of an `Open` request on `run`: its stdio, or its program's input and output (a
 * sequence's data channels, a command's stdio).
 *
 * @since 0.6.0
 */
export const sessionOf = (run: Incarnation, pid: number | undefined, request: {
  readonly stream: ByteStream
  readonly end?: boolean | undefined
  readonly replay?: boolean | undefined
  readonly contentType?: string | undefined
}): (socket: Net.Socket) => Effect.Effect<void> => {
  const { handle, program } = run
  const replay = request.replay ?? true
  const output = (name: "stdout" | "stderr" | "output") =>
    outputSession((socket, written) => handle.pipeOutput(name, socket, { replay, written }))
  const end = request.end ?? true
  const header = () => headerFor(run, pid, request.contentType ?? "application/octet-stream")
  switch (request.stream) {
    case "stdin":
      return inputSession(handle, "stdin", end, true)
    case "input":
      return inputSession(handle, program.inputName, end, true, header)
    case "stdout":
    case "stderr":
      return output(request.stream)
    case "output":
      return output(program.outputName)
    case "inout":
      // The output first: it is subscribed before any input can make output.
      return (socket) =>
        Effect.all([
          output(program.outputName)(socket),
          inputSession(handle, program.inputName, end, false, header)(socket)
        ], { concurrency: 2, discard: true })
  }
}
