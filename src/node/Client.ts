/**
 * The clients, composed: `HostClient` and `InstanceClient` on any participant's `Sharding`
 * ({@link services}), or as a complete client-only participant of the cluster ({@link layer}).
 *
 * @since 0.3.0
 */
import type { Sharding } from "effect/cluster/Sharding"
import { Effect, Layer } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import * as Cluster from "./Cluster.ts"
import { type ClusterConfig, clusterConfig } from "../base/Config.ts"
import * as Registry from "../instance/Registry.ts"
import * as PlacementGroups from "../instance/PlacementGroups.ts"
import * as Routes from "../client/Routes.ts"
import * as Durable from "../topic/Durable.ts"
import * as TopicRegistry from "../topic/TopicRegistry.ts"
import * as SequenceStore from "../sequence/SequenceStore.ts"
import * as HostClient from "../client/HostClient.ts"
import * as InstanceClient from "../client/InstanceClient.ts"
import type { Security } from "../transport/Security.ts"
import * as Tracing from "../metrics/Tracing.ts"

/**
 * The two clients on a participant that is already in the cluster (a runner, or an app that
 * composed `Cluster.clientLayer` itself).
 *
 * @since 0.3.0
 */
export const services = (
  options: InstanceClient.Options = {}
): Layer.Layer<HostClient.HostClient | InstanceClient.InstanceClient, never, Sharding | SqlClient | Security> =>
  Layer.mergeAll(HostClient.layer(options), InstanceClient.layer(options)).pipe(
    Layer.provide(Routes.layer),
    Layer.provide(Layer.mergeAll(Registry.layer, SequenceStore.layer(), PlacementGroups.layer, Durable.layer, TopicRegistry.layer))
  )

/**
 * A client-only participant with both clients: hosts no shards, dials runners directly.
 *
 * @since 0.3.0
 */
export const layer = (config: ClusterConfig, options: InstanceClient.Options & {
  readonly applicationName?: string | undefined
} = {}) => services(options).pipe(Layer.provideMerge(Cluster.clientLayer(config, options)))

/**
 * {@link layer} with the cluster settings read from the environment (`DATABASE_URL`, else the
 * embedded store in `SHARDHUB_HOME`).
 *
 * @since 0.3.0
 */
export const layerFromEnv = (options: InstanceClient.Options & { readonly applicationName?: string | undefined } = {}) =>
  Layer.unwrap(Effect.map(clusterConfig, (config) => layer(config, options))).pipe(
    // Merged: the spans of whoever uses the clients are exported too.
    Layer.provideMerge(Tracing.layer(options.applicationName ?? "shardhub-client"))
  )
