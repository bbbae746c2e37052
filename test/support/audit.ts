/**
 * Audit files of `test/instance/fixtures/audited.mjs`: every copy of an instance appends
 * `name pid time` every 20 ms while it lives, so the lifetimes of an instance's copies can be
 * checked for overlap and their gaps measured.
 */
import * as Fs from "node:fs"
import { expect } from "vitest"

export interface Life {
  readonly pid: number
  readonly first: number
  readonly last: number
}

/** The lifetimes of each instance's copies, from the audit file, ordered by start. */
export const lifetimes = (auditFile: string): Map<string, Array<Life>> => {
  const byName = new Map<string, Map<number, Life>>()
  for (const line of Fs.readFileSync(auditFile, "utf8").split("\n")) {
    if (line === "") continue
    const [name, pid, time] = line.split(" ")
    const copies = byName.get(name!) ?? new Map<number, Life>()
    byName.set(name!, copies)
    const life = copies.get(Number(pid))
    copies.set(Number(pid), life === undefined
      ? { pid: Number(pid), first: Number(time), last: Number(time) }
      : { ...life, last: Math.max(life.last, Number(time)) })
  }
  return new Map([...byName].map(([name, copies]) => [name, [...copies.values()].sort((a, b) => a.first - b.first)]))
}

/** Fails when two copies of one instance were alive at the same time. */
export const expectNoOverlap = (auditFile: string) => {
  const lives = lifetimes(auditFile)
  for (const [name, copies] of lives) {
    for (let i = 1; i < copies.length; i++) {
      expect(copies[i]!.first, `${name}: copy ${copies[i]!.pid} started before copy ${copies[i - 1]!.pid} ended`)
        .toBeGreaterThan(copies[i - 1]!.last)
    }
  }
  return lives
}
