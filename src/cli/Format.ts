/**
 * How the CLI prints: aligned tables for people, JSON with `--json`, sizes and ages in short
 * human units.
 *
 * Loads nothing at run time (its imports are types): the quick path (`Quick.ts`) prints with it
 * before any of Effect is loaded.
 *
 * @since 0.4.0
 */
import type { InstanceInfo } from "../instance/InstanceSpec.ts"
import type { LogLine } from "../process/LogStore.ts"

// Every C0 control but tab, DEL and the C1 controls (0x80-0x9f, which some terminals obey too).
const controls = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g
const controlsAndTab = /[\x00-\x1f\x7f-\x9f]/g
const visible = (char: string) => `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`

/**
 * Text from instances or users made safe for a terminal: control characters (escape sequences
 * that would move the cursor, retitle the window or rewrite earlier lines) print as `\xHH`.
 * Tabs stay, unless `tabs` is false.
 *
 * @since 0.4.0
 */
export const escape = (text: string, tabs = true): string =>
  text.replace(tabs ? controls : controlsAndTab, visible)

/**
 * Left-aligned columns with a header row; a missing value prints as `-`, control characters
 * as `\xHH`.
 *
 * @since 0.4.0
 */
export const table = (
  columns: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string | number | undefined>>
): string => {
  const cells = [columns, ...rows.map((row) => row.map((cell) => cell === undefined || cell === "" ? "-" : escape(String(cell), false)))]
  const widths = columns.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? "").length)))
  return cells
    .map((row) => row.map((cell, i) => i === row.length - 1 ? cell : (cell ?? "").padEnd(widths[i]!)).join("  "))
    .join("\n")
}

/** @since 0.4.0 */
export const bytes = (n: number | undefined): string | undefined => {
  if (n === undefined) return undefined
  if (n < 1024) return `${n} B`
  const units = ["KiB", "MiB", "GiB", "TiB"]
  let value = n / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`
}

/** A duration as `45s`, `12m`, `3h`, `2d`. */
export const age = (ms: number | undefined): string | undefined => {
  if (ms === undefined) return undefined
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86400)}d`
}

/** @since 0.4.0 */
export const json = (value: unknown): string => terminalSafe(JSON.stringify(value, null, 2))

/**
 * JSON on one line, as safe for a terminal as {@link json}.
 *
 * @since 0.8.0
 */
export const jsonLine = (value: unknown): string => terminalSafe(JSON.stringify(value))

/**
 * JSON text with DEL and the C1 controls (U+007F–U+009F, which JSON leaves raw and some
 * terminals obey: U+009B is CSI) written as `\uXXXX` escapes — the same JSON, nothing for a
 * terminal to act on. JSON already escapes the C0 controls.
 */
const terminalSafe = (text: string): string =>
  text.replace(/[\x7f-\x9f]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`)

/** An instance's row of `ps`: id, name, status, pid, runner, restarts, uptime, program. */
const instanceRow = (info: InstanceInfo, now: number) => {
  const program = info.spec.program
  return [
    info.id,
    info.name,
    info.status,
    info.pid,
    info.runner,
    info.restarts,
    info.status === "running" && info.startedAt !== undefined
      ? age(now - info.startedAt)
      : info.status === "scheduled" && info.nextTickAt !== undefined
      ? `next in ${age(Math.max(0, info.nextTickAt - now))}`
      : undefined,
    program._tag === "Command" ? [program.command, ...(program.args ?? [])].join(" ") : `sequence ${program.sequenceId}`
  ] as const
}

/**
 * `ps`: a row per instance.
 *
 * @since 0.6.0
 */
export const instances = (infos: ReadonlyArray<InstanceInfo>, now = Date.now()): string =>
  table(["ID", "NAME", "STATUS", "PID", "RUNNER", "RESTARTS", "UPTIME", "PROGRAM"], infos.map((info) => instanceRow(info, now)))

/**
 * `info`: one instance's record, a field per row.
 *
 * @since 0.6.0
 */
export const record = (info: InstanceInfo, now = Date.now()): string => {
  const [, name, status, pid, runner, restarts, uptime, program] = instanceRow(info, now)
  return table(["FIELD", "VALUE"], [
    ["id", info.id],
    ["name", name],
    ["status", status],
    ["program", program],
    ["pid", pid],
    ["runner", runner],
    ["restarts", restarts],
    ["uptime", uptime],
    ["exit code", info.exitCode],
    ["signal", info.signal],
    ["reason", info.reason],
    ["schedule", info.spec.schedule?.cron],
    ["next run", info.nextTickAt === undefined || info.status !== "scheduled" ? undefined : new Date(info.nextTickAt).toISOString()]
  ])
}

/**
 * `runners`: a row per runner.
 *
 * @since 0.6.0
 */
export const runners = (
  rows: ReadonlyArray<{
    readonly address: string
    readonly healthy: boolean
    readonly drained: boolean
    readonly labels: Readonly<Record<string, string>>
    readonly shards: number
    readonly instances: number
    readonly heartbeatAgeMs: number
  }>
): string =>
  table(
    ["ADDRESS", "HEALTHY", "SHARDS", "INSTANCES", "HEARTBEAT", "LABELS"],
    rows.map((r) => [
      r.address,
      r.drained ? "drained" : String(r.healthy),
      r.shards,
      r.instances,
      `${age(r.heartbeatAgeMs)} ago`,
      Object.entries(r.labels).map(([key, value]) => `${key}=${value}`).join(",") || undefined
    ])
  )

/**
 * `runner drain`: one progress line.
 *
 * @since 0.10.0
 */
export const drainLine = (p: { readonly address: string; readonly instances: number; readonly shards: number }, total: number): string =>
  `${p.address}: ${Math.max(0, total - p.instances)}/${total} moved, ${p.instances} left, ${p.shards} shard${p.shards === 1 ? "" : "s"} held`

/**
 * `logs`: one log line, prefixed with its instance's name when `prefix` is given.
 *
 * @since 0.6.0
 */
export const logLine = (line: LogLine, options: { readonly prefix?: string; readonly json?: boolean } = {}): string => {
  const prefix = options.prefix ?? ""
  if (options.json) return jsonLine(prefix === "" ? line : { ...line, instance: prefix })
  return `${prefix === "" ? "" : `${escape(prefix)} | `}${new Date(line.time).toISOString()} ${line.stream.padEnd(6)} ${escape(line.text)}`
}

/**
 * `stop` and `kill`: how an instance ended.
 *
 * @since 0.6.0
 */
export const outcome = (record: InstanceInfo): string =>
  `${record.id} ${record.status}${record.exitCode === undefined ? "" : ` (exit ${record.exitCode})`}${
    record.signal === undefined ? "" : ` (${record.signal})`
  }`

/**
 * `restart`: the instance running again.
 *
 * @since 0.6.0
 */
export const restarted = (record: InstanceInfo): string => `${record.id} ${record.status} (restarts ${record.restarts})`
