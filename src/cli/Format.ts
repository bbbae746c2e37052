/**
 * How the CLI prints: aligned tables for people, JSON with `--json`, sizes and ages in short
 * human units.
 *
 * @since 0.4.0
 */

/**
 * Left-aligned columns with a header row; a missing value prints as `-`.
 *
 * @since 0.4.0
 */
export const table = (
  columns: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string | number | undefined>>
): string => {
  const cells = [columns, ...rows.map((row) => row.map((cell) => cell === undefined || cell === "" ? "-" : String(cell)))]
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
