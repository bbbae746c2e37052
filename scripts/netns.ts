/**
 * Network namespaces for the chaos suite: each runner in its own namespace, all joined by veth
 * links to one bridge in the caller's namespace, so that one runner can be cut off the network
 * for real (its link down: packets dropped, no reset, exactly what a pulled cable does) while
 * the others, the store and the client keep talking.
 *
 * Needs root and `ip` (iproute2); {@link available} says whether this machine can.
 *
 *   caller's namespace: bridge <tag>b 10.231.<n>.1/24 ── <tag>h<i> ══ veth ══ eth0 10.231.<n>.<10+i>/24 (namespace <tag>-<i>)
 */
import * as ChildProcess from "node:child_process"

const ip = (...args: ReadonlyArray<string>) => {
  const result = ChildProcess.spawnSync("ip", args, { encoding: "utf8" })
  if (result.status !== 0) throw new Error(`ip ${args.join(" ")}: ${result.stderr || result.error?.message}`)
}

/** Whether namespaces can be made here (root, `ip` present, the kernel allows it). */
export const available = (): boolean => {
  if (process.getuid?.() !== 0) return false
  const name = `shardhub-probe-${process.pid}`
  try {
    ip("netns", "add", name)
    ip("netns", "del", name)
    return true
  } catch {
    return false
  }
}

export interface Network {
  /** The caller's address on the bridge (what the runners dial to reach it). */
  readonly hostAddress: string
  readonly address: (i: number) => string
  /** The command prefix that runs a program in namespace `i`. */
  readonly wrapper: (i: number) => ReadonlyArray<string>
  /** Takes namespace `i`'s link down (a partition) or up again. */
  readonly link: (i: number, up: boolean) => void
  readonly destroy: () => void
}

/** Creates `count` namespaces on one bridge; `destroy` removes everything it made. */
export const create = (count: number): Network => {
  const n = 1 + (process.pid % 250)
  const tag = `shc${n}`
  const namespace = (i: number) => `${tag}-${i}`
  const outer = (i: number) => `${tag}h${i}`
  const made: Array<() => void> = []
  const destroy = () => {
    for (const undo of made.reverse()) {
      try {
        undo()
      } catch {
        // already gone
      }
    }
    made.length = 0
  }
  try {
    ip("link", "add", `${tag}b`, "type", "bridge")
    made.push(() => ip("link", "del", `${tag}b`))
    ip("addr", "add", `10.231.${n}.1/24`, "dev", `${tag}b`)
    ip("link", "set", `${tag}b`, "up")
    for (let i = 0; i < count; i++) {
      ip("netns", "add", namespace(i))
      made.push(() => ip("netns", "del", namespace(i)))
      ip("link", "add", outer(i), "type", "veth", "peer", "name", "eth0", "netns", namespace(i))
      made.push(() => ip("link", "del", outer(i)))
      ip("link", "set", outer(i), "master", `${tag}b`, "up")
      ip("-n", namespace(i), "addr", "add", `10.231.${n}.${10 + i}/24`, "dev", "eth0")
      ip("-n", namespace(i), "link", "set", "eth0", "up")
      ip("-n", namespace(i), "link", "set", "lo", "up")
    }
  } catch (error) {
    destroy()
    throw error
  }
  return {
    hostAddress: `10.231.${n}.1`,
    address: (i) => `10.231.${n}.${10 + i}`,
    wrapper: (i) => ["ip", "netns", "exec", namespace(i)],
    link: (i, up) => ip("link", "set", outer(i), up ? "up" : "down"),
    destroy
  }
}
