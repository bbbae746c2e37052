/**
 * `Probe`: a tiny built-in entity that proves a runner serves. Every runner hosts it; any
 * participant can ask a probe which runner (and runner process) holds it, and pull a stream of
 * bytes from it to measure the transport.
 *
 * Each activation is recorded in `shardhub_activations`, so tests can check that no two
 * activations of one probe ever overlapped.
 *
 * @since 0.1.0
 */
import { ClusterSchema, Entity } from "effect/cluster"
import { Effect, Schema, Stream } from "effect"
import { Rpc } from "effect/rpc"
import { SqlClient } from "effect/sql/SqlClient"

/**
 * Where a probe is active.
 *
 * @since 0.1.0
 */
export class Activation extends Schema.Class<Activation>("shardhub/Probe/Activation")({
  /** The runner address, `host:port`. */
  runner: Schema.String,
  /** The runner's OS process id. */
  pid: Schema.Int,
  /** Row id in `shardhub_activations`. */
  activation: Schema.Int
}) {}

/**
 * Answers with the probe's current activation.
 *
 * @since 0.1.0
 */
export const Whoami = Rpc.make("Whoami", { success: Activation })

/**
 * Streams `chunks` chunks of `chunkSize` bytes (for transport benchmarks). At most 2^20 chunks of
 * at most 4 MiB.
 *
 * @since 0.1.0
 */
export const Bytes = Rpc.make("Bytes", {
  payload: {
    chunks: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1_048_576 })),
    chunkSize: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4_194_304 }))
  },
  success: Schema.Uint8Array,
  stream: true
})

/**
 * The entity.
 *
 * @since 0.1.0
 */
export const Probe = Entity.make("Probe", [Whoami, Bytes]).annotate(ClusterSchema.ClientTracingEnabled, false)

/**
 * The probe's behaviour, to be provided with a runner's cluster layer.
 *
 * @since 0.1.0
 */
export const layer = Probe.toLayer(Effect.gen(function*() {
  const address = yield* Entity.CurrentAddress
  const runner = yield* Entity.CurrentRunnerAddress
  const sql = yield* SqlClient
  const runnerName = `${runner.host}:${runner.port}`
  const [row] = yield* sql<{ readonly id: string }>`INSERT INTO shardhub_activations
      (entity_type, entity_id, runner, runner_pid)
      VALUES (${address.entityType}, ${address.entityId}, ${runnerName}, ${process.pid})
      RETURNING id`.pipe(Effect.orDie)
  const activation = new Activation({ runner: runnerName, pid: process.pid, activation: Number(row!.id) })
  yield* Effect.addFinalizer(() =>
    sql`UPDATE shardhub_activations SET ended_at = clock_timestamp() WHERE id = ${activation.activation}`.pipe(
      Effect.ignore
    )
  )
  return Probe.of({
    Whoami: () => Effect.succeed(activation),
    Bytes: ({ payload }) => {
      const chunk = new Uint8Array(payload.chunkSize).fill(0x61)
      return Stream.range(1, payload.chunks, 1).pipe(Stream.map(() => chunk))
    }
  })
}))
