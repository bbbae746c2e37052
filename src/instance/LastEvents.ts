/**
 * The last event of each name an instance emitted (what `event NAME` answers at once), bounded
 * so that a process emitting endless distinct names cannot fill its runner's memory: at most
 * `maxNames` names and `maxBytes` of data (as JSON); the least recently emitted names leave
 * first. Names longer than `maxNameLength` are not events anyone can ask for: they are dropped.
 *
 * @since 0.5.0
 */
import type { InstanceEvent } from "./InstanceSpec.ts"

/** @since 0.5.0 */
export interface Limits {
  readonly maxNames: number
  readonly maxBytes: number
  readonly maxNameLength: number
}

/** 1,000 names, 16 MiB, names up to 256 characters. @since 0.5.0 */
export const defaultLimits: Limits = { maxNames: 1000, maxBytes: 16 * 1024 * 1024, maxNameLength: 256 }

/** @since 0.5.0 */
export interface LastEvents {
  /** Keeps `event` as the last of its name; false when it is not kept (its name is too long). */
  readonly set: (event: InstanceEvent) => boolean
  readonly get: (name: string) => InstanceEvent | undefined
  readonly size: () => number
  readonly bytes: () => number
}

const sizeOf = (event: InstanceEvent) => event.name.length + (JSON.stringify(event.data)?.length ?? 4)

/** @since 0.5.0 */
export const make = (limits: Limits = defaultLimits): LastEvents => {
  // Map order is insertion order: re-inserting a name makes it the most recent.
  const events = new Map<string, { readonly event: InstanceEvent; readonly bytes: number }>()
  let bytes = 0
  const drop = (name: string) => {
    const kept = events.get(name)
    if (kept === undefined) return
    bytes -= kept.bytes
    events.delete(name)
  }
  return {
    set: (event) => {
      if (event.name.length > limits.maxNameLength) return false
      drop(event.name)
      const size = sizeOf(event)
      events.set(event.name, { event, bytes: size })
      bytes += size
      for (const oldest of events.keys()) {
        if (events.size <= limits.maxNames && bytes <= limits.maxBytes) break
        if (oldest === event.name) break
        drop(oldest)
      }
      return true
    },
    get: (name) => events.get(name)?.event,
    size: () => events.size,
    bytes: () => bytes
  }
}
