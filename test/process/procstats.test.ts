/**
 * What `/proc` readings are scaled by: the system's own page size and clock rate, not constants.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { describe, expect, it } from "vitest"
import * as ProcStats from "../../src/process/ProcStats.ts"

const getconf = (name: string) => Number(ChildProcess.execFileSync("getconf", [name], { encoding: "utf8" }).trim())

describe("process statistics", () => {
  it("scale by the system's page size and clock ticks", () => {
    expect(ProcStats.pageSize).toBe(getconf("PAGESIZE"))
    expect(ProcStats.clockTicks()).toBe(getconf("CLK_TCK"))
  })

  it("read a process group's RSS as the kernel reports it in kB", () => {
    const pgrp = Number(Fs.readFileSync("/proc/self/stat", "latin1").split(") ")[1]!.split(" ")[2])
    const before = Number(/VmRSS:\s+(\d+) kB/.exec(Fs.readFileSync("/proc/self/status", "utf8"))![1]) * 1024
    const group = ProcStats.readGroups(new Set([pgrp])).get(pgrp)!
    const after = Number(/VmRSS:\s+(\d+) kB/.exec(Fs.readFileSync("/proc/self/status", "utf8"))![1]) * 1024
    // The group holds this process (and whatever else runs in it), so at least its RSS.
    expect(group.rssBytes).toBeGreaterThanOrEqual(Math.min(before, after) * 0.9)
  })
})
