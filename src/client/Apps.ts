/**
 * Apps: the copies of one program started under one name (`run --instances N --name APP`, an
 * ecosystem app with `instances`), addressed by that name as PM2 addresses them. A copy carries
 * its app's name in a label and its index in its environment (`SHARDHUB_INSTANCE_INDEX`, and
 * PM2's `NODE_APP_INSTANCE`).
 *
 * @since 0.9.0
 */
import type { InstanceInfo, InstanceSpec } from "../instance/InstanceSpec.ts"

/**
 * The label that names the app an instance is a copy of (`run --instances N --name APP`).
 *
 * @since 0.9.0
 */
export const appLabel = "shardhub.app"

/**
 * The labels `shardhub apply` marks its instances with: the ecosystem file and the app.
 *
 * @since 0.9.0
 */
export const applyFileLabel = "shardhub.apply/file"
/** @since 0.9.0 */
export const applyAppLabel = "shardhub.apply/app"

/**
 * Whether `info` is named `name`, or is a copy of the app `name`.
 *
 * @since 0.9.0
 */
export const isCopyOf = (info: InstanceInfo, name: string): boolean =>
  info.name === name || info.spec.labels?.[appLabel] === name || info.spec.labels?.[applyAppLabel] === name

/**
 * The index of a copy of app `name`: its `SHARDHUB_INSTANCE_INDEX`, else its name's `-N`, else 0.
 *
 * @since 0.9.0
 */
export const copyIndex = (info: InstanceInfo, name: string): number => {
  const given = Number(info.spec.env?.set?.["SHARDHUB_INSTANCE_INDEX"])
  if (Number.isInteger(given)) return given
  const suffix = info.name?.startsWith(`${name}-`) ? Number(info.name.slice(name.length + 1)) : Number.NaN
  return Number.isInteger(suffix) ? suffix : 0
}

/**
 * The copies of app `name` among `instances`, lowest index first.
 *
 * @since 0.9.0
 */
export const copiesOf = (instances: ReadonlyArray<InstanceInfo>, name: string) =>
  instances
    .filter((info) => isCopyOf(info, name))
    .map((info) => ({ info, index: copyIndex(info, name) }))
    .sort((a, b) => a.index - b.index)

/**
 * The environment of copy `index` of an app.
 *
 * @since 0.9.0
 */
export const withCopyIndex = <Env extends { readonly set?: Readonly<Record<string, string>> }>(env: Env, index: number): Env => ({
  ...env,
  set: { ...env.set, SHARDHUB_INSTANCE_INDEX: String(index), NODE_APP_INSTANCE: String(index) }
})

/**
 * The spec of copy `index` of app `name`, made from `template` (another copy's spec).
 *
 * @since 0.9.0
 */
export const copySpec = (template: InstanceSpec, name: string, index: number): InstanceSpec => ({
  ...template,
  name: `${name}-${index}`,
  labels: { ...template.labels, [appLabel]: name },
  env: withCopyIndex(template.env ?? {}, index)
})
