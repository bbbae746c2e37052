/**
 * The cluster's socket transport: Effect's SocketRunner protocol over TCP, with TCP_NODELAY on
 * every socket, client and server side.
 *
 * `@effect/platform-node`'s `NodeClusterSocket` leaves Nagle's algorithm on; a streaming RPC
 * (each chunk waits for an ack) then stalls on delayed ACKs and crawls at a few MB/s. These
 * layers are the same as Effect's `layerClientProtocol` / `layerSocketServer`, with `noDelay`
 * passed through Node's own socket options.
 *
 * @since 0.1.0
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as Runners from "effect/cluster/Runners"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import { Effect, Layer, Option } from "effect"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import { Socket } from "effect/socket/Socket"
import type * as SocketServer from "effect/socket/SocketServer"

/**
 * Socket options shared by both ends of every cluster connection.
 *
 * @since 0.1.0
 */
export const socketOptions = { noDelay: true } as const

/**
 * Dials runners for RPCs: `Runners.RpcClientProtocol` over TCP with TCP_NODELAY.
 *
 * @since 0.1.0
 */
export const layerClientProtocol: Layer.Layer<Runners.RpcClientProtocol, never, RpcSerialization.RpcSerialization> =
  Layer.effect(Runners.RpcClientProtocol)(
    Effect.gen(function*() {
      const serialization = yield* RpcSerialization.RpcSerialization
      return {
        codecFor: serialization.codecFor,
        make: Effect.fnUntraced(function*(address) {
          const socket = yield* NodeSocket.makeNet({
            ...socketOptions,
            openTimeout: 1000,
            timeout: 5500,
            host: address.host,
            port: address.port
          })
          return yield* RpcClient.makeProtocolSocket().pipe(
            Effect.provideService(Socket, socket),
            Effect.provideService(RpcSerialization.RpcSerialization, serialization)
          )
        }, Effect.orDie)
      }
    })
  )

/**
 * The runner's listening socket, on `runnerListenAddress` (or `runnerAddress`), accepting
 * connections with TCP_NODELAY.
 *
 * @since 0.1.0
 */
export const layerSocketServer: Layer.Layer<
  SocketServer.SocketServer,
  SocketServer.SocketServerError,
  ShardingConfig.ShardingConfig
> = Layer.unwrap(Effect.gen(function*() {
  const config = yield* ShardingConfig.ShardingConfig
  const address = Option.orElse(config.runnerListenAddress, () => config.runnerAddress)
  if (Option.isNone(address)) {
    return yield* Effect.die("layerSocketServer: the runner has no address to listen on")
  }
  return NodeSocketServer.layer({ ...socketOptions, host: address.value.host, port: address.value.port })
}))
