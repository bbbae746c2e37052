/**
 * CPU and memory of whole process groups, read from `/proc`.
 *
 * One scan of `/proc/<pid>/stat` covers every managed group at once (about 8 µs per process on
 * the machine), so the cost does not grow with the number of managed processes. PM2 and
 * pidusage only measure the main pid; a group covers every descendant that stayed in it.
 *
 * @since 0.2.0
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"

/**
 * The kernel's page size, in bytes, as the kernel states it for this process's first mapping
 * (`KernelPageSize` in `/proc/self/smaps`): 4 KiB on x86-64, 16 or 64 KiB on some arm64
 * kernels, where a hard-coded 4096 would read every RSS 4–16× low and under-enforce memory
 * limits.
 *
 * @since 0.8.0
 */
export const pageSize: number = (() => {
  try {
    const fd = Fs.openSync("/proc/self/smaps", "r")
    try {
      const head = Buffer.alloc(8192)
      const read = Fs.readSync(fd, head, 0, head.length, 0)
      const kb = /KernelPageSize:\s+(\d+) kB/.exec(head.subarray(0, read).toString("latin1"))?.[1]
      return kb === undefined ? 4096 : Number(kb) * 1024
    } finally {
      Fs.closeSync(fd)
    }
  } catch {
    return 4096
  }
})()

let ticksPerSecond: number | undefined

/**
 * Clock ticks a second (`sysconf(_SC_CLK_TCK)`, what `/proc` counts CPU time in), asked of
 * `getconf` once, on first use; 100 (Linux's USER_HZ nearly everywhere) when it cannot say.
 *
 * @since 0.8.0
 */
export const clockTicks = (): number => {
  if (ticksPerSecond === undefined) {
    try {
      const answer = Number(ChildProcess.execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 2000 }).trim())
      ticksPerSecond = Number.isInteger(answer) && answer > 0 ? answer : 100
    } catch {
      ticksPerSecond = 100
    }
  }
  return ticksPerSecond
}
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
    total.rssBytes += Number(fields[21]) * pageSize
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
  elapsedMs <= 0 ? 0 : Math.max(0, ((ticksNow - ticksBefore) / clockTicks()) / (elapsedMs / 1000) * 100)

/**
 * The state letter of `/proc/<pid>/stat` (R, S, T, Z…), or `undefined` once the pid is gone.
 *
 * @since 0.11.0
 */
export const processState = (pid: number): string | undefined => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat[stat.lastIndexOf(")") + 2]
  } catch {
    return undefined
  }
}

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
