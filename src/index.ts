/**
 * shardhub for Effect applications: run a runner (optionally next to your own entities), join
 * as a client-only participant, and control instances with typed clients.
 *
 * @since 0.3.0
 */

/** Runner composition: `Runner.layerFromEnv({ entities })`, `Runner.layer(config, runner)`. */
export * as Runner from "./node/Runner.ts"
/** Cluster participants on the cluster store: `runnerLayer`, `clientLayer`. */
export * as Cluster from "./node/Cluster.ts"
/** Settings read from the environment. */
export * as Config from "./base/Config.ts"
/** `HostClient` + `InstanceClient` as a client-only participant, or on a runner. */
export * as Client from "./node/Client.ts"
/** list / start / get instances. */
export * as HostClient from "./client/HostClient.ts"
/** Every operation on an instance. */
export * as InstanceClient from "./client/InstanceClient.ts"
/** The Promise facade for Node code that does not use Effect. */
export * as PromiseClient from "./node/PromiseClient.ts"
/** The Instance entity's RPCs. */
export * as Instance from "./instance/Instance.ts"
/** Instance schemas: spec, info, status, health, events. */
export * as InstanceSpec from "./instance/InstanceSpec.ts"
/** Instance errors. */
export * as InstanceErrors from "./instance/InstanceErrors.ts"
/** The ProcessManager on its own (one machine, no cluster). */
export * as ProcessManager from "./process/ProcessManager.ts"
/** Process specs. */
export * as ProcessSpec from "./process/ProcessSpec.ts"
export * as Package from "./sequence/Package.ts"
export * as Pack from "./sequence/Pack.ts"
export * as SequenceStore from "./sequence/SequenceStore.ts"
