/**
 * What one of shardhub's typed errors means in HTTP terms: the status the gateway answers it
 * with, and the `code` STH's published client gives a failure of that status. The gateway and
 * the Promise facade both use it, so a failure reads the same through either.
 *
 * @since 0.6.0
 */

interface Tagged {
  readonly _tag: string
  readonly reason?: unknown
}

/**
 * The HTTP status of `error`.
 *
 * @since 0.6.0
 */
export const httpStatus = (error: Tagged): number => {
  switch (error._tag) {
    case "InstanceNotFound":
    case "SequenceNotFound":
      return 404
    case "InstanceAlreadyExists":
    case "SequenceAlreadyExists":
    case "SequenceInUse":
      return 409
    case "InvalidSpec":
    case "PackageError":
      return 422
    case "StartFailed":
    case "TopicError":
      if (error.reason === "NotFound") return 404
      if (error.reason === "InUse") return 409
      // A full runner or a store out of reach is not the request's fault.
      return error.reason === "Capacity" || error.reason === "TooManyTopics" || error.reason === "StoreUnavailable" ? 503 : 400
    case "NotRunning":
      return 400
    case "CallTimeout":
    case "StartUnconfirmed":
      return 503
    default:
      return 500
  }
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
