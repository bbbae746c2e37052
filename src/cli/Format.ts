/**
 * How the CLI prints: aligned tables for people, JSON with `--json`, sizes and ages in short
 * human units.
 *
 * @since 0.4.0
 */

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
export const json = (value: unknown): string => JSON.stringify(value, null, 2)
