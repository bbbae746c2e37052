/**
 * On one machine, only the cluster's owner drives it. Each test is an attack as another local
 * user would make it — a program run as `nobody` (`support/attacker.ts`) against a cluster run
 * by this test's user (root on CI): the tokenless loopback gateway, a program confined with
 * `--user nobody`, a squatter on a store's TCP port after its postmaster died, the store's
 * connection slots, a package's secrets on disk, and slow connections that would starve the
 * gateway's callers.
 */
import { Effect, Stream } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Zlib from "node:zlib"
import { describe, expect, inject, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import * as ScramOnly from "../../src/store/ScramOnly.ts"
import { isLoopback } from "../../src/transport/Security.ts"
import * as Connections from "../../src/http/Connections.ts"
import * as HubCredential from "../../src/instance/HubCredential.ts"
import * as PeerCredentials from "../../src/http/PeerCredentials.ts"
import { tar } from "../../src/sequence/Pack.ts"
import * as Attacker from "../support/attacker.ts"
import { useCluster } from "../support/cluster.ts"
import { spawnNode } from "../support/processes.ts"

const startBody = (proof: string) =>
  JSON.stringify({ spec: { program: { _tag: "Command", command: "sh", args: ["-c", `id > ${proof}`], cwd: "/" } } })

/** A GET as this process (the owner), on a fresh connection. */
const ownerGet = (url: string) =>
  new Promise<number>((resolve) => {
    const request = Http.get(url, { agent: false }, (response) => {
      response.resume()
      response.once("end", () => resolve(response.statusCode ?? 0))
    })
    request.once("error", () => resolve(0))
  })

describe.skipIf(Attacker.reason !== undefined)("local trust: only the cluster's owner drives it", () => {
  const cluster = useCluster("local-trust", { runners: 1 })
  let gateway: { readonly url: string } | undefined
  const gatewayUrl = async () => {
    gateway ??= await cluster.gateway("trust-gateway")
    return gateway.url
  }

  it("another user cannot start, list or read instances through the loopback gateway without the token", async () => {
    cluster.printOnFailure()
    const base = await gatewayUrl()
    // The owner's instance, with a secret in its environment and a line in its log.
    const secret = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const info = yield* host.start({
        name: "owners",
        env: { set: { API_KEY: "owner-secret-123" } },
        program: { _tag: "Command", command: "sh", args: ["-c", "echo log-secret-456"], cwd: "/" }
      })
      yield* instances.logs(info.id, { follow: true }).pipe(Stream.runDrain)
      return info.id
    }))
    const proof = Path.join(Os.tmpdir(), `shardhub-proof-${process.pid}-${Date.now()}`)
    for (const api of ["/api/shardhub/v1/instances", "/api/v1/instances"]) {
      const started = await Attacker.request(`${base}${api}`, { method: "POST", headers: { "content-type": "application/json" }, body: startBody(proof) })
      expect(started.status).toBe(401)
    }
    const reads = await Promise.all([
      Attacker.request(`${base}/api/shardhub/v1/instances`),
      Attacker.request(`${base}/api/v1/instances`),
      Attacker.request(`${base}/api/shardhub/v1/instances/${secret}`),
      Attacker.request(`${base}/api/shardhub/v1/instances/${secret}/logs`),
      Attacker.request(`${base}/api/v1/instance/${secret}/stdout`)
    ])
    for (const read of reads) {
      expect(read.status).toBe(401)
      expect(read.body).not.toMatch(/owner-secret-123|log-secret-456/)
      expect(JSON.parse(read.body).error).toMatch(/send Authorization: Bearer <token>/)
    }
    expect(Fs.existsSync(proof)).toBe(false)
    // The owner, with no token and no setup, is let in.
    const listed = await fetch(`${base}/api/shardhub/v1/instances?all=true`)
    expect(listed.status).toBe(200)
  })

  it("a program confined to another user (--user nobody) cannot drive the cluster through the gateway", async () => {
    cluster.printOnFailure()
    const base = await gatewayUrl()
    const proof = Path.join(Os.tmpdir(), `shardhub-confined-proof-${process.pid}-${Date.now()}`)
    const script = `curl -s -o /dev/null -w '%{http_code}\\n' -H 'content-type: application/json' -d '${startBody(proof)}' ${base}/api/shardhub/v1/instances; ` +
      `curl -s -o /dev/null -w '%{http_code}\\n' ${base}/api/shardhub/v1/instances`
    // The confined child's data directory is in the home: that user must be able to pass it.
    Fs.chmodSync(cluster.home, 0o711)
    const lines = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const info = yield* host.start({ user: "nobody", program: { _tag: "Command", command: "sh", args: ["-c", script], cwd: "/" } })
      return yield* instances.logs(info.id, { follow: true }).pipe(
        Stream.filter((line) => line.stream === "stdout"),
        Stream.map((line) => line.text),
        Stream.runCollect
      )
    })).finally(() => Fs.chmodSync(cluster.home, 0o700))
    expect(Array.from(lines)).toEqual(["401", "401"])
    expect(Fs.existsSync(proof)).toBe(false)
  })

  it("a confined program given the hub (hub: true) reaches its own instance and topics with its credential, nothing else", async () => {
    cluster.printOnFailure()
    const base = await gatewayUrl()
    const id = `hub-${process.pid}-${Date.now()}`
    const code = (path: string, extra = "") =>
      `curl -s -o /dev/null -w '%{http_code}\\n' -H "authorization: Bearer $SHARDHUB_HUB_TOKEN" ${extra} '${base}${path}'`
    const script = [
      `test -n "$SHARDHUB_HUB_TOKEN" && echo has-token`,
      code(`/api/shardhub/v1/instances/${id}`),
      code(`/api/v1/instance/${id}/health`),
      code("/api/shardhub/v1/instances/some-other-instance"),
      code("/api/shardhub/v1/instances"),
      code("/api/shardhub/v1/instances", `-H 'content-type: application/json' -d '${startBody("/tmp/never")}'`),
      code("/api/v1/topics"),
      code(`/api/v1/instance/${id}/../../instances`, "--path-as-is"),
      // Another instance's credential is not this one's, and a forged one is nothing.
      `curl -s -o /dev/null -w '%{http_code}\\n' -H "authorization: Bearer shh1.some-other-instance.$(echo $SHARDHUB_HUB_TOKEN | cut -d. -f3-)" '${base}/api/shardhub/v1/instances/some-other-instance'`
    ].join("; ")
    Fs.chmodSync(cluster.home, 0o711)
    const lines = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      yield* host.start({ user: "nobody", hub: true, program: { _tag: "Command", command: "sh", args: ["-c", script], cwd: "/" } }, { id })
      return yield* instances.logs(id, { follow: true }).pipe(
        Stream.filter((line) => line.stream === "stdout"),
        Stream.map((line) => line.text),
        Stream.runCollect
      )
    })).finally(() => Fs.chmodSync(cluster.home, 0o700))
    expect(Array.from(lines)).toEqual(["has-token", "200", "200", "401", "401", "401", "200", "401", "401"])
  })

  it("the embedded store has no door for other users: no TCP listener, a socket they cannot reach", async () => {
    cluster.printOnFailure()
    const storeHome = inject("storeHome")
    const postmaster = Fs.readFileSync(Path.join(storeHome, "postgres", "data", "postmaster.pid"), "utf8").split("\n")
    const pid = Number(postmaster[0])
    const socketDirectory = postmaster[4]!.trim()
    expect(socketDirectory).toBe(Path.join(storeHome, "postgres", "socket"))
    // No socket of the postmaster listens on TCP (state 0A in the kernel's tables).
    const inodes = new Set(
      Fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
        try {
          return /^socket:\[(\d+)\]$/.exec(Fs.readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1]
        } catch {
          return undefined
        }
      }).filter((inode) => inode !== undefined)
    )
    const listening = ["/proc/net/tcp", "/proc/net/tcp6"].flatMap((table) =>
      Fs.readFileSync(table, "utf8").split("\n").slice(1).map((line) => line.trim().split(/\s+/)).filter((f) => f[3] === "0A" && inodes.has(f[9]!))
    )
    expect(listening).toEqual([])
    // Another user cannot even open a connection to the socket, so it cannot fill the slots.
    const attempt = await Attacker.run<{ readonly code: string }>(
      `const n = require("net"); const s = n.connect({ path: process.argv[2] });
       s.on("connect", () => { console.log(JSON.stringify({ code: "connected" })); s.destroy() });
       s.on("error", (e) => console.log(JSON.stringify({ code: e.code })))`,
      [Path.join(socketDirectory, ".s.PGSQL.5432")]
    )
    expect(attempt.code).toBe("EACCES")
  })

  // What a local user who binds a TCP store's port first (7 ms after its postmaster died, in the
  // trial) is sent: it answers the pool's start-up with a password request.
  it.each([
    ["cleartext", "const ask = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3])"],
    ["MD5", "const ask = Buffer.from([0x52, 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4])"]
  ])("a squatter on a store's TCP port that asks for the password in %s is sent nothing", async (method, ask) => {
    cluster.printOnFailure()
    const squatter = Attacker.start(`
      const n = require("net"); ${ask}; let got = Buffer.alloc(0)
      const server = n.createServer((s) => {
        let asked = false
        s.on("data", (d) => { if (asked) got = Buffer.concat([got, d]); else { asked = true; s.write(ask) } })
        s.on("close", () => { console.log(JSON.stringify({ got: got.toString("latin1") })); server.close() })
        s.on("error", () => {})
      })
      server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: server.address().port })))
    `)
    const port = await new Promise<number>((resolve) => {
      const check = () => {
        const match = /"port":(\d+)/.exec(squatter.stdout())
        if (match !== null) resolve(Number(match[1]))
        else setTimeout(check, 20)
      }
      check()
    })
    const participant = spawnNode(`store-client-${method}`, "test/support/storeProcess.ts", {
      env: { DATABASE_URL: `postgres://shardhub:The-Store-Password@127.0.0.1:${port}/shardhub`, SHARDHUB_HOME: cluster.home }
    })
    const exit = await participant.exited
    expect(exit.code).not.toBe(0)
    expect(participant.output()).toContain(`asked for the password ${method === "MD5" ? "as MD5" : "in cleartext"}; shardhub sends passwords only over SCRAM-SHA-256`)
    squatter.child.kill("SIGTERM")
    const { stdout } = await squatter.done
    const got = stdout.trim().split("\n").map((line) => JSON.parse(line) as { got?: string }).flatMap((line) => line.got ?? [])
    expect(got.length).toBeGreaterThan(0)
    // Not the password, and not even a password message (type 'p').
    for (const bytes of got) expect(bytes).toBe("")
  })

  it("a package's files are private to the runner's user, even under a home others can pass", async () => {
    cluster.printOnFailure()
    Fs.chmodSync(cluster.home, 0o711)
    try {
      const archive = Zlib.gzipSync(tar([
        { type: "file", path: "package.json", data: JSON.stringify({ main: "index.js" }) },
        { type: "file", path: "index.js", data: "module.exports = (input) => input\n", mode: 0o644 },
        { type: "file", path: "config.env", data: "DB_PASSWORD=package-secret-789\n", mode: 0o644 }
      ]))
      await cluster.run(Effect.gen(function*() {
        const host = yield* HostClient
        const instances = yield* InstanceClient
        const seq = yield* host.sendSequence(archive)
        const { id } = yield* host.startSequence(seq.id)
        yield* instances.kill(id)
      }))
      const cache = Path.join(cluster.home, "runner-0", "sequences")
      const [unpacked] = Fs.readdirSync(cache)
      const secretFile = Path.join(cache, unpacked!, "config.env")
      expect(Fs.readFileSync(secretFile, "utf8")).toContain("package-secret-789")
      const read = await Attacker.run<{ readonly code: string }>(
        `try { require("fs").readFileSync(process.argv[2]); console.log(JSON.stringify({ code: "read" })) }
         catch (e) { console.log(JSON.stringify({ code: e.code })) }`,
        [secretFile]
      )
      expect(read.code).toBe("EACCES")
    } finally {
      Fs.chmodSync(cluster.home, 0o700)
    }
  })

  it("slow connections from many addresses cannot starve the owner's requests", async () => {
    cluster.printOnFailure()
    const { url } = await cluster.gateway("starved-gateway", {
      SHARDHUB_GATEWAY_MAX_CONNECTIONS: "200",
      SHARDHUB_GATEWAY_HEADERS_TIMEOUT: "30 seconds"
    })
    const { port } = new URL(url)
    // 8 source addresses × 40 connections that send half a request line and stall.
    const attack = Attacker.start(`
      const n = require("net"); let open = 0; const sockets = []
      for (let a = 2; a <= 9; a++) for (let i = 0; i < 40; i++) {
        const s = n.connect({ host: "127.0.0.1", port: ${port}, localAddress: "127.0.0." + a }, () => { s.write("GET /api/v1/instances HTTP/1.1\\r\\nHost: 127"); if (++open === 320) console.log("stalling") })
        s.on("error", () => {}); sockets.push(s)
      }
      setTimeout(() => process.exit(0), 60000)
    `)
    try {
      await new Promise<void>((resolve, reject) => {
        const deadline = Date.now() + 30_000
        const check = () => {
          if (attack.stdout().includes("stalling")) resolve()
          else if (Date.now() > deadline) reject(new Error("the attacker never connected"))
          else setTimeout(check, 20)
        }
        check()
      })
      const answers: Array<number> = []
      for (let i = 0; i < 20; i++) answers.push(await ownerGet(`${url}/api/v1/instances`))
      expect(answers).toEqual(Array.from({ length: 20 }, () => 200))
    } finally {
      attack.child.kill("SIGKILL")
    }
  })

  it("SHARDHUB_HOME is made 0700 by whoever makes it first, and an exposed one is named in a warning", async () => {
    cluster.printOnFailure()
    const parent = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-homes-"))
    try {
      const fresh = Path.join(parent, "fresh", "home")
      const first = await cluster.gateway("fresh-home-gateway", { SHARDHUB_HOME: fresh })
      expect(Fs.statSync(fresh).mode & 0o777).toBe(0o700)
      expect(first.process.output()).not.toContain("is not private")
      const exposed = Path.join(parent, "exposed")
      Fs.mkdirSync(exposed)
      Fs.chmodSync(exposed, 0o777)
      const second = await cluster.gateway("exposed-home-gateway", { SHARDHUB_HOME: exposed })
      await second.process.waitFor(/warning +SHARDHUB_HOME .* is not private: .*\(mode 0777\) is writable by other users/, 10_000)
    } finally {
      Fs.rmSync(parent, { recursive: true, force: true })
    }
  })
})

describe("local trust: the rules underneath", () => {
  it("finds a loopback peer's owner in the kernel's socket table, for IPv4, IPv6 and IPv4-mapped peers", () => {
    // Lines as /proc/net/tcp{,6} print them (little-endian words), peer 127.0.0.1:40000 -> 127.0.0.1:8000.
    const tcp = [
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
      "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0",
      "   1: 0100007F:9C40 0100007F:1F40 01 00000000:00000000 00:00000000 00000000 65534        0 2 1 0000000000000000 20 4 30 10 -1",
      "   2: 0100007F:1F40 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1"
    ].join("\n")
    expect(PeerCredentials.ownerIn(tcp, { address: "127.0.0.1", port: 40000 }, { address: "127.0.0.1", port: 8000 })).toBe(65534)
    expect(PeerCredentials.ownerIn(tcp, { address: "::ffff:127.0.0.1", port: 40000 }, { address: "::ffff:127.0.0.1", port: 8000 })).toBe(65534)
    expect(PeerCredentials.ownerIn(tcp, { address: "127.0.0.1", port: 40001 }, { address: "127.0.0.1", port: 8000 })).toBeUndefined()
    const tcp6 = "   0: 00000000000000000000000001000000:9C40 00000000000000000000000001000000:1F40 01 00000000:00000000 00:00000000 00000000  1000        0 2"
    expect(PeerCredentials.ownerIn(tcp6, { address: "::1", port: 40000 }, { address: "::1", port: 8000 })).toBe(1000)
    // One loopback rule (the gateway's, the transport's): IPv4-mapped loopback included.
    expect(["::ffff:127.0.0.9", "127.1.2.3", "::1"].map(isLoopback)).toEqual([true, true, true])
    expect(["10.0.0.1", "::ffff:10.0.0.1", "::2"].map(isLoopback)).toEqual([false, false, false])
  })

  it("scopes an instance's hub credential to its own endpoints and to topics; a forged or altered one is nothing", () => {
    const secret = "not-the-cluster-key"
    const sign = (message: string) => `k-1.${Crypto.createHmac("sha256", secret).update(message).digest("base64url")}`
    const verify = (message: string, signature: string) => signature === sign(message)
    const token = HubCredential.mint(sign, "a.b-1")!
    expect(HubCredential.instanceOf(verify, token)).toBe("a.b-1")
    expect(HubCredential.instanceOf(verify, token.replace("a.b-1", "a.b-2"))).toBeUndefined()
    expect(HubCredential.instanceOf(verify, `${token}x`)).toBeUndefined()
    expect(HubCredential.instanceOf(verify, "s3cret")).toBeUndefined()
    const allowed: Array<[string, string]> = [
      ["GET", "/api/v1/instance/a.b-1/stdout"],
      ["POST", "/api/v1/instance/a.b-1/_event"],
      ["POST", "/api/shardhub/v1/instances/a.b-1/stop"],
      ["GET", "/api/v1/topic/orders"],
      ["POST", "/api/v1/topic/orders"],
      ["GET", "/api/v1/topics"]
    ]
    const refused: Array<[string, string]> = [
      ["GET", "/api/v1/instance/a.b-2/stdout"],
      ["GET", "/api/v1/instance/a.b-1x/stdout"],
      ["GET", "/api/v1/instances"],
      ["POST", "/api/shardhub/v1/instances"],
      ["GET", "/api/v1/instance/a.b-1/../../instances"],
      ["GET", "/api/v1/instance/a.b-1%2F..%2F..%2Finstances"],
      ["DELETE", "/api/v1/topics/orders"],
      ["POST", "/api/v1/sequence"],
      ["GET", "/api/v1/log"],
      ["GET", "/metrics"]
    ]
    for (const [method, path] of allowed) expect([method, path, HubCredential.allows("a.b-1", method, path)]).toEqual([method, path, true])
    for (const [method, path] of refused) expect([method, path, HubCredential.allows("a.b-1", method, path)]).toEqual([method, path, false])
  })

  it("counts IPv6 clients per /64 and IPv4(-mapped) clients per address", () => {
    expect(Connections.addressKey("2001:db8:1:2:aaaa::1")).toBe(Connections.addressKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"))
    expect(Connections.addressKey("2001:db8:1:2::1")).not.toBe(Connections.addressKey("2001:db8:1:3::1"))
    expect(Connections.addressKey("::ffff:10.1.2.3")).toBe("10.1.2.3")
    expect(Connections.addressKey("10.1.2.3")).not.toBe(Connections.addressKey("10.1.2.4"))
  })

  it("reads a server's authentication request: cleartext and MD5 refused, SCRAM and trust passed", () => {
    const message = (code: number, extra: Array<number> = []) => [0x52, 0, 0, 0, 8 + extra.length, 0, 0, 0, code, ...extra]
    expect(ScramOnly.authenticationVerdict(Uint8Array.from(message(3)))).toMatchObject({ _tag: "refuse" })
    expect(ScramOnly.authenticationVerdict(Uint8Array.from(message(5, [1, 2, 3, 4])))).toMatchObject({ _tag: "refuse" })
    expect(ScramOnly.authenticationVerdict(Uint8Array.from(message(0)))).toEqual({ _tag: "pass" })
    // SASL: not decided until the exchange ends with AuthenticationOk.
    expect(ScramOnly.authenticationVerdict(Uint8Array.from(message(10, [...Buffer.from("SCRAM-SHA-256\0\0")])))).toEqual({ _tag: "more" })
    // A request split across reads waits for the rest.
    expect(ScramOnly.authenticationVerdict(Uint8Array.from(message(3).slice(0, 6)))).toEqual({ _tag: "more" })
  })
})
