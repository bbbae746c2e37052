/**
 * The attack of "Security 1", as a separate program: an Effect client-only participant that
 * knows only a runner's address — an in-memory runner list, no store, no file of the cluster's —
 * and asks it to start `sh -c 'touch <proof>'`. Prints one JSON line with what came back.
 *
 *   node test/support/intruder.ts <host:port> <proof file> <credentials>
 *
 * credentials: `plain` (no authentication), `foreign` (a key of its own, like another
 * cluster's), or `<key id>:<hex secret>` (that key: a stolen id with a guessed secret, or a
 * retired key); with `tls:` before the last two, it offers the key with TLS-PSK instead of the
 * loopback handshake.
 */
import { NodeRuntime } from "@effect/platform-node"
import * as MessageStorage from "effect/cluster/MessageStorage"
import * as Runner from "effect/cluster/Runner"
import * as RunnerAddress from "effect/cluster/RunnerAddress"
import * as RunnerStorage from "effect/cluster/RunnerStorage"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import * as SocketRunner from "effect/cluster/SocketRunner"
import { Duration, Effect, Layer } from "effect"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as Crypto from "node:crypto"
import * as Security from "../../src/transport/Security.ts"
import * as Transport from "../../src/transport/Transport.ts"
import * as Instance from "../../src/instance/Instance.ts"

const [target = "", proof = "", credentials = "plain"] = process.argv.slice(2)
const [host = "", port = ""] = target.split(":")

/** A `Security` that dials with a key that is not (or no longer) the cluster's. */
const withKey = (via: "tls" | "handshake", id: string, secret: Buffer): Security.Security["Service"] => ({
  ...Security.plain,
  mode: "cluster-key",
  connect: (options) => Security.connectWithKey(options, () => ({ id, secret }), via)
})

const via = credentials.startsWith("tls:") ? "tls" : "handshake"
const key = credentials.replace(/^tls:/, "")
const security = key === "plain"
  ? Security.plain
  : key === "foreign"
  ? withKey(via, `k-${Crypto.randomBytes(6).toString("hex")}`, Crypto.randomBytes(32))
  : withKey(via, key.split(":")[0]!, Buffer.from(key.split(":")[1]!, "hex"))

const runners = Layer.effectDiscard(Effect.gen(function*() {
  const storage = yield* RunnerStorage.RunnerStorage
  yield* storage.register(
    new Runner.Runner({ address: RunnerAddress.make(host, Number(port)), groups: ["default"], weight: 1 }),
    true
  )
})).pipe(Layer.provideMerge(RunnerStorage.layerMemory))

const cluster = SocketRunner.layerClientOnly.pipe(
  Layer.provide(Transport.layerClientProtocol),
  Layer.provide(Layer.succeed(Security.Security, security)),
  Layer.provide([MessageStorage.layerNoop, runners, RpcSerialization.layerSchemaBinary()]),
  Layer.provide(ShardingConfig.layer({ shardsPerGroup: Number(process.env.SHARDHUB_SHARDS ?? 300) }))
)

const program = Effect.gen(function*() {
  const instances = yield* Instance.Instance.client
  const started = yield* instances(`intruder-${process.pid}`).Start({
    spec: { program: { _tag: "Command", command: "sh", args: ["-c", `touch ${proof}`] } },
    startKey: `intruder-${process.pid}`
  }).pipe(Effect.timeout(Duration.seconds(8)), Effect.result)
  console.log(JSON.stringify({ done: true, started: started._tag === "Success", answer: String(started) }))
})

program.pipe(Effect.provide(cluster), NodeRuntime.runMain)
