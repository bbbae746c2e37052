// Starts Scramjet Transform Hub 0.18.7's host with its process adapter (no Docker), for the
// benchmarks' STH baseline: node start.cjs <port> <instancesPort> <sequencesRoot>
// Run from the directory the STH packages are installed in (see scripts/sth.ts).
const { startHost } = require("@scramjet/host")
const { ConfigService } = require("@scramjet/sth-config")

const [port, instancesPort, root] = process.argv.slice(2)
const config = new ConfigService({
  runtimeAdapter: "process",
  // Errors only (the default, TRACE, logs every request and chunk).
  logLevel: "error",
  host: { hostname: "127.0.0.1", port: Number(port), instancesServerPort: Number(instancesPort), infoFilePath: `${root}/sth-id.json` },
  sequencesRoot: root,
  // Load checks that always pass (an instance needs more than -1 MB free and the CPU less than
  // 100 % loaded) and no delay after an instance exits: STH at its fastest.
  safeOperationLimit: 0,
  instanceRequirements: { freeMem: -1, cpuLoad: 0, freeSpace: -1 },
  instanceAdapterExitDelay: 0
}).getConfig()
startHost({}, config, { identifyExisting: false }).then(
  () => console.log(`sth ready http://127.0.0.1:${port}/api/v1`),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
