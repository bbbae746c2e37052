/**
 * Prometheus' text format (0.0.4) for samples kept outside Effect's metric registry: values read
 * at scrape time (the cluster's records, each process's resource use), which would otherwise
 * leave one registry entry behind per instance that ever ran.
 *
 * @since 0.6.0
 */

const escape = (value: string) => value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

const labels = (values: Record<string, string>) => {
  const entries = Object.entries(values)
  return entries.length === 0 ? "" : `{${entries.map(([k, v]) => `${k}="${escape(v)}"`).join(",")}}`
}

export interface Family {
  readonly name: string
  readonly help: string
  readonly samples: ReadonlyArray<readonly [Record<string, string>, number]>
}

/**
 * Renders metric families (all gauges) in the Prometheus text format 0.0.4.
 *
 * @since 0.6.0
 */
export const render = (families: ReadonlyArray<Family>): string =>
  families.map((family) =>
    [
      `# HELP ${family.name} ${family.help}`,
      `# TYPE ${family.name} gauge`,
      ...family.samples.map(([values, value]) => `${family.name}${labels(values)} ${value}`)
    ].join("\n")
  ).join("\n") + "\n"
