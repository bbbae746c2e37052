/**
 * The cluster's socket transport: Effect's SocketRunner protocol over TCP, with TCP_NODELAY on
 * every socket, client and server side, authenticated by {@link Security} (the cluster key; a
 * connection without it is refused at the handshake).
 *
 * `@effect/platform-node`'s `NodeClusterSocket` leaves Nagle's algorithm on; a streaming RPC
 * (each chunk waits for an ack) then stalls on delayed ACKs and crawls at a few MB/s. These
 * layers are the same as Effect's `layerClientProtocol` / `layerSocketServer`, with `noDelay`
 * passed through Node's own socket options. The server is built here rather than with
 * `NodeSocketServer.makeTls`, which drops a failed handshake silently: a runner must say who
 * was refused and why.
 *
 * @since 0.1.0
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as Runners from "effect/cluster/Runners"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import { Context, Effect, Exit, Fiber, Layer, Option, Scope } from "effect"
import * as NetAddress from "effect/net/NetAddress"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import { Socket, SocketError, SocketOpenError } from "effect/socket/Socket"
import * as SocketServer from "effect/socket/SocketServer"
import type * as Net from "node:net"
import { isLoopback, Security } from "./Security.ts"

/**
 * Dials runners for RPCs: `Runners.RpcClientProtocol` over {@link Security}'s authenticated
 * sockets (TCP_NODELAY).
 *
 * @since 0.1.0
 */
export const layerClientProtocol: Layer.Layer<
  Runners.RpcClientProtocol,
  never,
  RpcSerialization.RpcSerialization | Security
> = Layer.effect(Runners.RpcClientProtocol)(
  Effect.gen(function*() {
    const serialization = yield* RpcSerialization.RpcSerialization
    const security = yield* Security
    return {
      codecFor: serialization.codecFor,
      make: Effect.fnUntraced(function*(address) {
        const socket = yield* NodeSocket.fromDuplex(
          Effect.acquireRelease(
            security.connect({ host: address.host, port: address.port, timeoutMs: 1000 }).pipe(
              Effect.mapError((cause) =>
                new SocketError({ reason: new SocketOpenError({ kind: "Unknown", cause }) })
              )
            ),
            (socket) => Effect.sync(() => socket.destroySoon())
          )
        )
        return yield* RpcClient.makeProtocolSocket().pipe(
          Effect.provideService(Socket, socket),
          Effect.provideService(RpcSerialization.RpcSerialization, serialization)
        )
      }, Effect.orDie)
    }
  })
)

/**
 * A `SocketServer` on `host:port` whose handler gets only connections that passed
 * {@link Security}'s handshake. Connections that arrive before `run` wait (paused).
 *
 * @since 0.5.0
 */
export const makeSocketServer = Effect.fnUntraced(function*(listen: { readonly host: string; readonly port: number }) {
  const security = yield* Security
  const pending = new Set<Net.Socket>()
  const hold = (conn: Net.Socket) => {
    pending.add(conn)
    conn.once("close", () => pending.delete(conn))
  }
  let onConnection = hold
  const server = security.createServer({}, (conn) => {
    conn.on("error", () => {})
    conn.pause()
    onConnection(conn)
  })
  yield* Effect.addFinalizer(() =>
    Effect.callback<void>((resume) => {
      for (const conn of pending) conn.destroy()
      server.close(() => resume(Effect.void))
    })
  )
  yield* Effect.callback<void, SocketServer.SocketServerError>((resume) => {
    const onError = (cause: Error) =>
      resume(Effect.fail(new SocketServer.SocketServerError({ reason: new SocketServer.SocketServerOpenError({ cause }) })))
    server.once("error", onError)
    server.listen(listen.port, listen.host, () => {
      server.off("error", onError)
      resume(Effect.void)
    })
  })
  const bound = server.address() as Net.AddressInfo
  const address = yield* Effect.fromResult(NetAddress.inetAddressFromIpString(bound.address, bound.port)).pipe(
    Effect.mapError((cause) => new SocketServer.SocketServerError({ reason: new SocketServer.SocketServerOpenError({ cause }) }))
  )

  const run = Effect.fnUntraced(function*<R, E, _>(handler: (socket: Socket) => Effect.Effect<_, E, R>) {
    const scope = yield* Scope.make()
    const services = Context.omit(Scope.Scope)(yield* Effect.context<R>()) as Context.Context<R>
    const track = Fiber.runIn(scope)
    onConnection = (conn) =>
      NodeSocket.fromDuplex(
        Effect.acquireRelease(Effect.succeed(conn), (conn) => Effect.sync(() => conn.destroySoon()))
      ).pipe(
        Effect.flatMap(handler),
        Effect.ignoreCause({ log: "Unhandled", message: "Unhandled error in the runner's socket server" }),
        Effect.runForkWith(Context.add(services, NodeSocket.NetSocket, conn)),
        track
      )
    for (const conn of pending) {
      pending.delete(conn)
      onConnection(conn)
    }
    return yield* Effect.callback<never>(() =>
      Effect.suspend(() => {
        onConnection = hold
        return Scope.close(scope, Exit.void)
      })
    )
  })
  return SocketServer.SocketServer.of({ address, run })
})

/**
 * The runner's listening socket, on `runnerListenAddress` (or `runnerAddress`). Refuses plain
 * mode on an address other than loopback.
 *
 * @since 0.1.0
 */
export const layerSocketServer: Layer.Layer<
  SocketServer.SocketServer,
  SocketServer.SocketServerError,
  ShardingConfig.ShardingConfig | Security
> = Layer.effect(SocketServer.SocketServer)(Effect.gen(function*() {
  const config = yield* ShardingConfig.ShardingConfig
  const security = yield* Security
  const address = Option.orElse(config.runnerListenAddress, () => config.runnerAddress)
  if (Option.isNone(address)) {
    return yield* Effect.die("layerSocketServer: the runner has no address to listen on")
  }
  if (security.mode === "plain" && !isLoopback(address.value.host)) {
    return yield* Effect.die(plainOffLoopback(address.value.host))
  }
  return yield* makeSocketServer(address.value)
}))

/**
 * The one line a runner (or data port) says when asked to listen off loopback without security.
 *
 * @since 0.5.0
 */
export const plainOffLoopback = (host: string) =>
  `refusing to listen on ${host} without transport security: SHARDHUB_TRANSPORT=plain is for ` +
  `loopback only; unset it (TLS with the cluster key is the default)`
