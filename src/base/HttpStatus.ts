/**
 * What a failure means in HTTP terms: the status the gateway answers it with, and the `code`
 * STH's published client gives a failure of that status. The gateway and the Promise facade
 * both use it, so a failure reads the same through either.
 *
 * shardhub's own errors carry their status (`httpStatus` on each error class). The errors of
 * Effect's cluster and SQL modules that reach a caller are listed here by type (they answer
 * 500); {@link Statused} is what an HTTP handler may fail with, so a new error that says
 * nothing about its status does not compile there, instead of silently becoming a 500.
 *
 * @since 0.8.0
 */
import type { AlreadyProcessingMessage, EntityNotAssignedToRunner, MailboxFull, PersistenceError } from "effect/cluster/ClusterError"
import type { SqlError } from "effect/sql/SqlError"

/**
 * Effect's errors that reach a caller of the clients: each answers 500 (the cluster or the
 * store failed the request, not the caller).
 *
 * @since 0.8.0
 */
export type EffectError = AlreadyProcessingMessage | EntityNotAssignedToRunner | MailboxFull | PersistenceError | SqlError

/**
 * An error that says what it means in HTTP terms: one of shardhub's (with `httpStatus`) or one
 * of Effect's listed in {@link EffectError}.
 *
 * @since 0.8.0
 */
export type Statused = { readonly _tag: string; readonly message: string; readonly httpStatus: number } | EffectError

/**
 * The status of a `StartFailed` or `TopicError` by its reason: a full runner or a store out of
 * reach is not the request's fault.
 *
 * @since 0.8.0
 */
export const reasonStatus = (reason: string): number =>
  reason === "NotFound"
    ? 404
    : reason === "InUse"
    ? 409
    : reason === "Capacity" || reason === "TooManyTopics" || reason === "StoreUnavailable"
    ? 503
    : 400

/**
 * The HTTP status of `error`: its own `httpStatus`, else 500 (Effect's {@link EffectError}s,
 * and anything unexpected).
 *
 * @since 0.6.0
 */
export const httpStatus = (error: unknown): number => {
  const own = typeof error === "object" && error !== null ? (error as { readonly httpStatus?: unknown }).httpStatus : undefined
  return typeof own === "number" ? own : 500
}

/**
 * The `code` of `@scramjet/api-client`'s `ClientError` for a failure of `status`.
 *
 * @since 0.6.0
 */
export const sthCode = (status: number): string =>
  status === 400
    ? "BAD_PARAMETERS"
    : status === 401
    ? "NEED_AUTHENTICATION"
    : status === 403
    ? "NOT_AUTHORIZED"
    : status === 404
    ? "NOT_FOUND"
    : status === 422
    ? "UNPROCESSABLE_ENTITY"
    : status >= 500
    ? "SERVER_ERROR"
    : "REQUEST_ERROR"
