/**
 * The ProcessManager's settings, and their defaults.
 *
 * @since 0.8.0
 */
import type * as Managed from "./ManagedProcess.ts"

/**
 * Settings of a manager. Only `stateDir` is required.
 *
 * @since 0.2.0
 */
export interface Config extends Partial<Managed.Settings> {
  /** Owned by one live manager: logs, data directories, the supervisor token. */
  readonly stateDir: string
  /**
   * How often CPU and memory are sampled (STH's `monitorRate`) while anyone reads them; idle,
   * a read samples on demand. Default 1 s.
   */
  readonly sampleIntervalMs?: number
  /** How often memory limits are checked. Default 250 ms, so a limit acts within 1 s. */
  readonly limitIntervalMs?: number
  /** How long the log files of a removed process are kept (`keepLogs`). Default 10 minutes. */
  readonly logRetentionMs?: number
  /** Graceful stop granted to each managed when the manager shuts down. Default 5 s. */
  readonly shutdownTimeoutMs?: number
  /** Processes it runs at once at most; a spawn beyond is refused. Default 2000. */
  readonly maxProcesses?: number
}

export const defaults: Managed.Settings = {
  logRingLines: 10_000,
  logRingBytes: 256 * 1024,
  logFileBytes: 10 * 1024 * 1024,
  logKeepFiles: 3,
  maxLineBytes: 64 * 1024,
  outputRetainBytes: 1024 * 1024,
  outputHighWaterBytes: 1024 * 1024,
  messageBuffer: 1024,
  maxMessageBytes: 4 * 1024 * 1024,
  closeGraceMs: 100,
  crashLogLines: 20
}

