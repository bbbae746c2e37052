/**
 * A fresh database for each test file, on the test run's embedded Postgres.
 */
import { Effect, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { inject } from "vitest"
import * as Store from "../../src/store/Store.ts"

/**
 * Creates a new, empty database and returns its URL.
 */
export const freshDatabase = async (label: string): Promise<string> => {
  const adminUrl = inject("adminUrl")
  const name = `t_${label.replace(/\W/g, "_").toLowerCase()}_${randomBytes(4).toString("hex")}`
  await Effect.runPromise(Store.ensureDatabase(Redacted.make(adminUrl), name))
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}
