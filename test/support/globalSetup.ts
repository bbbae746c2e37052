/**
 * One embedded Postgres for the whole test run, in a temporary SHARDHUB_HOME, non-durable
 * (fsync off). Each suite creates its own database in it (see `database.ts`).
 */
import { Effect, Redacted } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import type { TestProject } from "vitest/node"
import * as EmbeddedPostgres from "../../src/store/EmbeddedPostgres.ts"

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of the `postgres` database on the test run's server, as its superuser. */
    readonly adminUrl: string
    /** The SHARDHUB_HOME of that server (its password file is `postgres/password` there). */
    readonly storeHome: string
  }
}

export default async function setup(project: TestProject) {
  const home = await Fs.mkdtemp(Path.join(Os.tmpdir(), "shardhub-test-"))
  const server = await Effect.runPromise(EmbeddedPostgres.ensureRunning({ home, durable: false }))
  project.provide("adminUrl", Redacted.value(EmbeddedPostgres.url(server, "postgres")))
  project.provide("storeHome", home)
  return async () => {
    await Effect.runPromise(EmbeddedPostgres.stop(server, "5 seconds"))
    await Fs.rm(home, { recursive: true, force: true })
  }
}
