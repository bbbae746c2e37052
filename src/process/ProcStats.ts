/**
 * CPU and memory of whole process groups, read from `/proc`.
 *
 * One scan of `/proc/<pid>/stat` covers every managed group at once (about 8 µs per process on
 * the machine), so the cost does not grow with the number of managed processes. PM2 and
 * pidusage only measure the main pid; a group covers every descendant that stayed in it.
 *
 * @since 0.2.0
 */
import * as Fs from "node:fs"

const CLOCK_TICKS = 100
const PAGE_SIZE = 4096

/**
 * Totals for one process group at one moment.
 *
 * @since 0.2.0
 */
export interface GroupUsage {
  readonly processes: number
  /** user + system CPU time of the live members, in clock ticks. */
  readonly ticks: number
  readonly rssBytes: number
}

/**
 * Reads usage for the given process groups. Groups without a live member are absent.
 *
 * @since 0.2.0
 */
export const readGroups = (pgids: ReadonlySet<number>): Map<number, GroupUsage> => {
  const usage = new Map<number, { processes: number; ticks: number; rssBytes: number }>()
  if (pgids.size === 0) return usage
  let entries: Array<string>
  try {
    entries = Fs.readdirSync("/proc")
  } catch {
    return usage
  }
  for (const entry of entries) {
    const first = entry.charCodeAt(0)
    if (first < 48 || first > 57) continue
    let stat: string
    try {
      stat = Fs.readFileSync(`/proc/${entry}/stat`, "latin1")
    } catch {
      continue
    }
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // fields[0] is field 3 (state); pgrp is field 5, utime 14, stime 15, rss 24.
    if (fields[0] === "Z") continue
    const pgrp = Number(fields[2])
    if (!pgids.has(pgrp)) continue
    const total = usage.get(pgrp) ?? { processes: 0, ticks: 0, rssBytes: 0 }
    total.processes++
    total.ticks += Number(fields[11]) + Number(fields[12])
    total.rssBytes += Number(fields[21]) * PAGE_SIZE
    usage.set(pgrp, total)
  }
  return usage
}

/**
 * CPU percent of one core between two readings of a group's ticks.
 *
 * @since 0.2.0
 */
export const cpuPercent = (ticksBefore: number, ticksNow: number, elapsedMs: number): number =>
  elapsedMs <= 0 ? 0 : Math.max(0, ((ticksNow - ticksBefore) / CLOCK_TICKS) / (elapsedMs / 1000) * 100)

/**
 * The start time of a process (clock ticks since boot), to tell a pid from a reused one.
 *
 * @since 0.2.0
 */
export const startTime = (pid: number): number | undefined => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "latin1")
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19])
  } catch {
    return undefined
  }
}
