/**
 * When a runner runs a full collection to give memory back (node/HeapSettler): only after a large
 * fall of its process count that has stopped falling for the quiet time, once per fall.
 */
import { describe, expect, it } from "vitest"
import { initial, type State, step } from "../../src/node/HeapSettler.ts"

const options = { minDrop: 100, quietMs: 10_000 }

/** Feeds `counts` one per `everyMs`; the times at which it collected. */
const run = (counts: ReadonlyArray<number>, everyMs = 5_000) => {
  let state: State = initial
  const collected: Array<number> = []
  counts.forEach((count, i) => {
    const next = step(state, count, i * everyMs, options)
    state = next.state
    if (next.collect) collected.push(i)
  })
  return collected
}

describe("the heap settler", () => {
  it("collects once, after a mass stop has been quiet for the quiet time", () => {
    // 1,000 processes, all stopped at sample 3; quiet from then on.
    expect(run([1000, 1000, 1000, 0, 0, 0, 0, 0, 0, 0])).toEqual([5])
  })

  it("waits while the count keeps falling, and never collects for growth, small drops or churn", () => {
    expect(run([1000, 800, 600, 400, 200, 0, 0, 0, 0])).toEqual([7])
    expect(run(Array.from({ length: 50 }, (_, i) => i * 100))).toEqual([])
    expect(run([1000, 950, 950, 950, 950, 950])).toEqual([])
    expect(run([300, 250, 250, 250, 250])).toEqual([])
    expect(run(Array.from({ length: 100 }, (_, i) => 1000 + (i % 2) * 50))).toEqual([])
  })

  it("holds its rules over random histories", () => {
    let total = 0
    for (let round = 0; round < 500; round++) {
      const counts: Array<number> = []
      let count = Math.floor(Math.random() * 2000)
      for (let i = 0; i < 200; i++) {
        const r = Math.random()
        count = Math.max(0, r < 0.6 ? count : r < 0.8 ? count + Math.floor(Math.random() * 300) : count - Math.floor(Math.random() * 600))
        counts.push(count)
      }
      const collected = run(counts)
      total += collected.length
      let from = 0
      for (const at of collected) {
        const peak = Math.max(...counts.slice(from, at + 1))
        // A fall of at least minDrop and a quarter of the peak since the last collection…
        expect(peak - counts[at]!).toBeGreaterThanOrEqual(Math.max(options.minDrop, peak / 4))
        // …that has not fallen further for the quiet time (two samples of 5 s).
        for (let i = at - 1; i <= at; i++) expect(counts[i]!).toBeGreaterThanOrEqual(counts[i - 1] ?? 0)
        from = at
      }
    }
    expect(total).toBeGreaterThan(0)
  })
})
