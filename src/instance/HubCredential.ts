/**
 * An instance's credential for the gateway (`SHARDHUB_HUB_TOKEN`, what STH's `this.hub` sends):
 * given only when the instance's spec asks (`hub: true`), and good only for what concerns that
 * instance — its own endpoints (input, output, events, health, stop) and the topics it reads and
 * writes — never for starting, listing or reading other instances, sequences or the hub's logs.
 *
 * It is `shh1.<instance id>.<key id>.<HMAC>`: the cluster key (`Security.sign`) signs the
 * instance id, so any gateway of the cluster checks it without a table, a runner cannot be
 * asked for one, and a retired key retires its credentials.
 *
 * Why scoped: a program confined to another user (`--user`) is refused by the gateway's owner
 * check; this credential is the one door it may be given, and it opens only its own room. (An
 * instance that is not confined runs as the gateway's own user: it is the owner, and the owner
 * check lets it in anyway — confine what you do not trust.)
 *
 * @since 0.8.0
 */
const prefix = "shh1."

const message = (instanceId: string) => `hub:${instanceId}`

/**
 * The credential of `instanceId`, signed with `sign` (`Security.sign`).
 *
 * @since 0.8.0
 */
export const mint = (sign: (message: string) => string | undefined, instanceId: string): string | undefined => {
  const signature = sign(message(instanceId))
  return signature === undefined ? undefined : `${prefix}${instanceId}.${signature}`
}

/**
 * The instance a credential was given to, if `token` is one and its signature holds.
 *
 * @since 0.8.0
 */
export const instanceOf = (verify: (message: string, signature: string) => boolean, token: string): string | undefined => {
  if (!token.startsWith(prefix)) return undefined
  const parts = token.slice(prefix.length).split(".")
  if (parts.length < 3) return undefined
  const signature = parts.slice(-2).join(".")
  const instanceId = parts.slice(0, -2).join(".")
  return verify(message(instanceId), signature) ? instanceId : undefined
}

/** A path's segments, decoded; `undefined` for dot segments or an encoded slash (no way around the checks below). */
const segmentsOf = (path: string): ReadonlyArray<string> | undefined => {
  try {
    const segments = path.split("?")[0]!.split("/").slice(1).map(decodeURIComponent)
    return segments.some((segment) => segment === "." || segment === ".." || segment.includes("/")) ? undefined : segments
  } catch {
    return undefined
  }
}

const startsWith = (segments: ReadonlyArray<string>, head: ReadonlyArray<string>) =>
  segments.length >= head.length && head.every((segment, i) => segments[i] === segment)

/**
 * Whether the credential of `instanceId` may make this request.
 *
 * @since 0.8.0
 */
export const allows = (instanceId: string, method: string, path: string): boolean => {
  const segments = segmentsOf(path)
  if (segments === undefined) return false
  if (startsWith(segments, ["api", "v1", "instance", instanceId])) return true
  if (startsWith(segments, ["api", "shardhub", "v1", "instances", instanceId])) return true
  if (segments.length === 4 && startsWith(segments, ["api", "v1", "topic"])) return method === "GET" || method === "POST"
  if (segments.length === 3 && method === "GET") {
    return startsWith(segments, ["api", "v1", "topics"]) || startsWith(segments, ["api", "v1", "version"])
  }
  return false
}
