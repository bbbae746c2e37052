/**
 * The chaos suite, short: `scripts/chaos.ts` with 5 seeded cycles against three runner processes
 * on their own embedded store, each runner in its own network namespace when run as root (seed 5:
 * a killed postmaster, a freeze past the lock expiration, a runner SIGKILL, a killed postmaster,
 * a partition past the lock expiration), checked from outside. `npm run chaos -- --cycles 100` is
 * the long run.
 */
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { describe, expect, it, onTestFailed } from "vitest"
import { root } from "../support/processes.ts"

describe("chaos", () => {
  it("5 seeded fault cycles: no overlap, no duplicate, no lost or phantom start, every runner recovers and stops", async () => {
    let stderr = ""
    let output = ""
    // A failure shows each cycle's log and the whole result (the assertion shows only its head).
    onTestFailed(() => console.error(`----- chaos -----\n${stderr}\n${output}`))
    output = await new Promise<string>((resolve, reject) => {
      const child = ChildProcess.spawn(
        process.execPath,
        [Path.join(root, "scripts/chaos.ts"), "--cycles", "5", "--seed", "5", "--instances", "12", "--json"],
        { cwd: root, stdio: ["ignore", "pipe", "pipe"] }
      )
      let stdout = ""
      child.stdout.on("data", (chunk) => (stdout += chunk))
      child.stderr.on("data", (chunk) => (stderr += chunk))
      child.on("exit", (code) => {
        const line = stdout.trim().split("\n").findLast((line) => line.startsWith("{\"seed\""))
        if (line === undefined) reject(new Error(`chaos printed no result (exit ${code}):\n${stderr}\n${stdout}`))
        else resolve(line)
      })
    })
    const result = JSON.parse(output)
    expect(result.summary.map((s: { cycles: number }) => s.cycles).reduce((a: number, b: number) => a + b, 0)).toBe(5)
    expect({ violations: result.violations, summary: result.summary }).toMatchObject({ violations: 0 })
  }, 600_000)
})
