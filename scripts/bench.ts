/**
 * `npm run bench`: every benchmark that reports JSON (`process`, `cluster`, `sequence`, `http`), one after the
 * other, summarised in one table beside the raw baselines measured in the same runs.
 * (`bench:transport` and `bench:failover` print their own tables.)
 */
import * as ChildProcess from "node:child_process"
import * as Os from "node:os"
import * as Path from "node:path"
import { printTable } from "./support.ts"

const runJson = (script: string): Record<string, number> => {
  console.error(`running ${script} …`)
  const output = ChildProcess.execFileSync(process.execPath, [Path.join(import.meta.dirname, script), "--json"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 16 * 1024 * 1024
  })
  const line = output.trim().split("\n").findLast((l) => l.startsWith("{"))
  if (line === undefined) throw new Error(`${script} printed no JSON result:\n${output}`)
  return JSON.parse(line)
}

const processes = runJson("process.ts")
const cluster = runJson("cluster.ts")
const sequences = runJson("sequence.ts")
const http = runJson("http.ts")

printTable(`shardhub benchmarks (${Os.cpus().length} cores, node ${process.version})`, [
  ["process: spawn → exit p50", processes.raw_spawn_p50_ms!, processes.spawn_p50_ms!, "ms"],
  ["process: 200 MiB through cat", processes.raw_pipe_mib_s!, processes.pipe_mib_s!, "MiB/s"],
  ["process: message round trip p50", processes.raw_msg_rtt_p50_us!, processes.msg_rtt_p50_us!, "µs"],
  ["cluster: start of cat → running p50 (start_cat_p50_ms)", cluster.raw_spawn_p50_ms!, cluster.start_cat_p50_ms!, "ms"],
  ["cluster: info round trip p50 (rpc_p50_us)", cluster.raw_rpc_p50_us!, cluster.rpc_p50_us!, "µs"],
  ["cluster: req/s at concurrency 64 (rpc_req_s)", cluster.raw_rpc_req_s!, cluster.rpc_req_s!, "req/s"],
  ["cluster: client → cat → client (stream_mib_s; raw: Node TCP relay)", cluster.raw_relay_mib_s!, cluster.stream_mib_s!, "MiB/s"],
  ["cluster: stream vs local pipes (raw_pipe_mib_s)", cluster.raw_pipe_mib_s!, cluster.stream_mib_s!, "MiB/s"],
  ["sequence: start → first output byte p50 (seq_start_first_byte_ms; raw_node_start_ms)", sequences.raw_node_start_ms!, sequences.seq_start_first_byte_ms!, "ms"],
  ["sequence: 1 GiB through a pass-through (seq_stream_mib_s; raw: node child pipes)", sequences.raw_node_pipe_mib_s!, sequences.seq_stream_mib_s!, "MiB/s"],
  ["sequence: the same, direct (seq_direct_stream_mib_s)", sequences.raw_node_pipe_mib_s!, sequences.seq_direct_stream_mib_s!, "MiB/s"],
  ["http: api-client start → instance id p50 (http_start_ms; raw_node_start_ms)", http.raw_node_start_ms!, http.http_start_ms!, "ms"],
  ["http: 50 MiB through a pass-through with api-client (http_stream_mib_s; raw: node child pipes)", http.raw_node_pipe_mib_s!, http.http_stream_mib_s!, "MiB/s"]
])
console.log(`\ncluster: failover after SIGKILL (failover_ms, p50): ${cluster.failover_ms!.toFixed(0)} ms`)
