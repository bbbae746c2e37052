/**
 * Where a child's data directory lives and what environment it starts with.
 *
 * @since 0.6.0
 */
import * as Path from "node:path"
import { ENV, type ResolvedSpec, withheld } from "./ProcessSpec.ts"

/**
 * Where a process' data directory lives.
 *
 * @since 0.2.0
 */
export const dataDirOf = (stateDir: string, id: string) => Path.join(stateDir, "data", id)

/**
 * The environment a child starts with: the runner's own without what is withheld (see
 * `withheld`), the variables the spec passes or sets, and the manager's own.
 *
 * @since 0.2.0
 */
export const childEnv = (spec: ResolvedSpec, id: string, dataDir: string, token: string): Record<string, string> => {
  const env: Record<string, string> = {}
  if (spec.env.inherit) {
    for (const [key, value] of Object.entries(process.env)) {
      if (value !== undefined && !withheld(key)) env[key] = value
    }
  }
  for (const key of spec.env.pass) {
    const value = process.env[key]
    if (value !== undefined) env[key] = value
  }
  for (const key of spec.env.remove) delete env[key]
  Object.assign(env, spec.env.set)
  env[ENV.dataDir] = dataDir
  env[ENV.processId] = id
  env[ENV.supervisor] = token
  if (spec.messages !== undefined) {
    env[ENV.messageFd] = "3"
    env[ENV.messageCodec] = spec.messages
  } else {
    delete env[ENV.messageFd]
    delete env[ENV.messageCodec]
  }
  return env
}
