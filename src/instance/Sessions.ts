/**
 * The data-port sessions of an instance: a client's bytes into a process, a process's output to
 * a client, and which of them an `Open` request gets.
 *
 * @since 0.5.0
 */
import * as NodeSink from "@effect/platform-node/NodeSink"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Effect, Stream } from "effect"
import type * as Net from "node:net"
import type { ProcessHandle } from "../process/ProcessManager.ts"
import { DataPortError } from "./DataPort.ts"
import type { ByteStream } from "./InstanceSpec.ts"
import { headerFor, type Run } from "./Run.ts"
import * as InstanceMetrics from "../metrics/InstanceMetrics.ts"

/**
 * Pipes a socket's bytes into a process's stdin; answers `DONE` or `ERR <reason>` when done.
 *
 * @since 0.5.0
 */
export const inputSession = (
  sink: (options: { readonly end: boolean }) => ReturnType<ProcessHandle["stdin"]>,
  end: boolean,
  answer: boolean,
  header: () => Uint8Array | undefined = () => undefined
) =>
(socket: Net.Socket) =>
  Stream.suspend(() => {
    const bytes = NodeStream.fromReadable<Uint8Array, DataPortError>({
      evaluate: () => socket,
      onError: (error) => new DataPortError({ message: `the input connection broke: ${(error as Error)?.message ?? String(error)}` }),
      closeOnDone: false
    })
    const first = header()
    return first === undefined ? bytes : Stream.concat(Stream.make(first), bytes)
  })
    .pipe(
      InstanceMetrics.countBytes("in"),
      Stream.run(sink({ end })),
      Effect.matchEffect({
        onFailure: (error) => Effect.sync(() => answer && socket.end(`ERR ${error.message}\n`)),
        onSuccess: () => Effect.sync(() => answer && socket.end("DONE\n"))
      })
    )

/**
 * Pipes a process output into a socket, ending it when the output ends.
 *
 * @since 0.5.0
 */
export const outputSession = (output: Stream.Stream<Uint8Array>) => (socket: Net.Socket) =>
  output.pipe(
    InstanceMetrics.countBytes("out"),
    Stream.run(NodeSink.fromWritable({ evaluate: () => socket, onError: () => undefined, endOnDone: true })),
    Effect.ignore
  )

/**
 * The session of an `Open` request on `run`: its stdio, or its program's input and output (a
 * sequence's data channels, a command's stdio).
 *
 * @since 0.6.0
 */
export const sessionOf = (run: Run, pid: number | undefined, request: {
  readonly stream: ByteStream
  readonly end?: boolean | undefined
  readonly replay?: boolean | undefined
  readonly contentType?: string | undefined
}): (socket: Net.Socket) => Effect.Effect<void> => {
  const { handle, program } = run
  const replay = { replay: request.replay ?? true }
  const end = request.end ?? true
  const header = () => headerFor(run, pid, request.contentType ?? "application/octet-stream")
  switch (request.stream) {
    case "stdin":
      return inputSession(handle.stdin, end, true)
    case "input":
      return inputSession(program.input(handle), end, true, header)
    case "stdout":
      return outputSession(handle.stdout(replay))
    case "output":
      return outputSession(program.output(handle)(replay))
    case "stderr":
      return outputSession(handle.stderr(replay))
    case "inout":
      // The output first: it is subscribed before any input can make output.
      return (socket) =>
        Effect.all([
          outputSession(program.output(handle)(replay))(socket),
          inputSession(program.input(handle), end, false, header)(socket)
        ], { concurrency: 2, discard: true })
  }
}
