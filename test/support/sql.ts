/**
 * One-off queries against a test database.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import type { SqlClient } from "effect/sql/SqlClient"

/**
 * Runs one statement on `url` over a short-lived connection and returns its rows.
 */
export const query = <A extends object>(
  url: string,
  statement: (sql: SqlClient) => Effect.Effect<ReadonlyArray<any>, unknown>
): Promise<ReadonlyArray<A>> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.flatMap(PgClient.makeClient({ url: Redacted.make(url) }), (sql) => statement(sql))
    ).pipe(Effect.provide(Reactivity.layer))
  ) as Promise<ReadonlyArray<A>>
