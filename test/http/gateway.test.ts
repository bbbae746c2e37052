/**
 * The HTTP gateway against a two-runner cluster: the published `@scramjet/api-client` 0.26.1
 * and `si` 0.26.1 drive it unchanged, and every endpoint answers bad input with a JSON error.
 * The gateway runs as its own process (`shardhub gateway`), a client-only participant.
 */
import { HostClient as StHostClient } from "@scramjet/api-client"
import { Effect, Stream } from "effect"
import parsePrometheus from "parse-prometheus-text-format"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { Readable } from "node:stream"
import * as Zlib from "node:zlib"
import { beforeAll, describe, expect, it, vi } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import * as Pack from "../../src/sequence/Pack.ts"
import { concat, sha256 } from "../support/bytes.ts"
import * as Attacker from "../support/attacker.ts"
import { useCluster } from "../support/cluster.ts"
import { eventually, root, type Spawned } from "../support/processes.ts"
import { fixture } from "../sequence/fixtures.ts"

/** Reads a node-fetch body until `done(text so far)`. */
const readUntil = (body: NodeJS.ReadableStream, done: (text: string) => boolean) =>
  new Promise<string>((resolve, reject) => {
    let text = ""
    body.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8")
      if (done(text)) resolve(text)
    })
    body.on("error", reject)
    body.on("end", () => (done(text) ? resolve(text) : reject(new Error(`ended with ${JSON.stringify(text)}`))))
  })

const readAll = (body: NodeJS.ReadableStream) =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Array<Buffer> = []
    body.on("data", (chunk: Buffer) => chunks.push(chunk))
    body.on("error", reject)
    body.on("end", () => resolve(Buffer.concat(chunks)))
  })

/** One request with exactly these headers (fetch would not let a test set Host). */
const request = (url: string, init: { method?: string; headers?: Record<string, string>; body?: Uint8Array | string } = {}) =>
  new Promise<{ status: number; headers: Http.IncomingHttpHeaders; text: string }>((resolve, reject) => {
    const sent = Http.request(url, { method: init.method ?? "GET", headers: init.headers ?? {}, agent: false }, (response) => {
      let text = ""
      response.on("data", (chunk) => (text += chunk))
      response.on("end", () => resolve({ status: response.statusCode!, headers: response.headers, text }))
    })
    sent.on("error", reject)
    sent.end(init.body)
  })

/** Resolves when the server closes a connection that has sent `bytes` (and nothing more). */
const closedAfter = (url: string, bytes: string) =>
  new Promise<string>((resolve, reject) => {
    const { hostname, port } = new URL(url)
    const socket = Net.connect({ host: hostname, port: Number(port) }, () => socket.write(bytes))
    let received = ""
    socket.on("data", (chunk) => (received += chunk))
    socket.on("error", reject)
    socket.on("close", () => resolve(received))
  })

describe("the HTTP gateway", () => {
  const cluster = useCluster("gateway", { runners: 2, env: { SHARDHUB_METRICS_PORT: "0" } })
  let api = ""
  let gateway: Spawned

  beforeAll(async () => {
    const started = await cluster.gateway("gateway")
    gateway = started.process
    api = `${started.url}/api/v1`
  }, 120_000)

  const call = async (method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}) => {
    const response = await fetch(`${api}${path}`, { method, ...init })
    const text = await response.text()
    let json: any
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    return { status: response.status, text, json, type: response.headers.get("content-type") }
  }

  const jsonHeaders = { "content-type": "application/json" }

  it("drives a sequence with @scramjet/api-client 0.26.1: upload, start with args, input/output, events, stop with keep-alive, kill, delete", async () => {
    cluster.printOnFailure()
    const host = new StHostClient(api)
    expect(await host.getVersion()).toMatchObject({ service: "shardhub", apiVersion: "v1" })
    expect(await host.getLoadCheck()).toHaveProperty("memFree")

    const sequence = await host.sendSequence(Readable.from([fixture("features")]))
    expect((await host.listSequences()).map((s: { id: string }) => s.id)).toContain(sequence.id)

    const instance = await sequence.start({ appConfig: { greeting: "hi" }, args: ["a", "keepalive"] })
    expect(await sequence.listInstances()).toEqual([instance.id])
    expect(await instance.getInfo()).toMatchObject({ id: instance.id, status: "running", args: ["a", "keepalive"] })
    expect(await instance.getHealth()).toMatchObject({ healthy: true })
    // Its log: STH's records, the sequence's logger lines from "Sequence".
    const logged = await readUntil(await instance.getStream("log"), (text) => text.includes("started with"))
    expect(JSON.parse(logged.split("\n").find((line) => line.includes("started with"))!)).toMatchObject({
      level: expect.any(String),
      msg: expect.stringContaining("started with"),
      ts: expect.any(Number),
      from: "Sequence"
    })

    // Input and output: text in, upper-cased text out; the input stays open.
    const output = await instance.getStream("output")
    await instance.sendInput("hello\nworld\n", {}, { type: "text/plain", end: false })
    expect(await readUntil(output, (text) => text.includes("WORLD"))).toContain("HELLO")
    ;(output as unknown as Readable).destroy()

    // Events both ways: the next one, then the last one.
    const next = instance.getNextEvent("pong")
    await instance.sendEvent("ping", "x")
    const pong = { eventName: "pong", message: { data: "x", args: ["a", "keepalive"], config: { greeting: "hi" } } }
    expect(await next).toEqual(pong)
    expect(await instance.getEvent("pong")).toEqual(pong)

    // A stop the sequence answers with a keep-alive: it keeps running and still answers.
    const stopping = await instance.stop(5000, true)
    expect(stopping).toMatchObject({ id: instance.id, status: "stopping" })
    expect(await instance.getEvent("stopping")).toEqual({ eventName: "stopping", message: { timeout: 5000, canCallKeepalive: true } })
    const again = instance.getNextEvent("pong")
    await instance.sendEvent("ping", "still there")
    expect((await again).message.data).toBe("still there")

    // Kill: the kill handler runs, then the process is gone.
    const killed = await instance.kill({ removeImmediately: false })
    expect(killed).toMatchObject({ id: instance.id, terminated: { exitcode: 137, reason: "Instance killed" } })
    expect(await instance.getEvent("killed")).toEqual({ eventName: "killed", message: {} })

    expect(await host.deleteSequence(sequence.id)).toEqual({ id: sequence.id })
    expect((await host.listSequences()).map((s: { id: string }) => s.id)).not.toContain(sequence.id)
  })

  it("passes 16 MiB of random bytes through a pass-through sequence with the api-client, byte-exact", async () => {
    cluster.printOnFailure()
    const data = Crypto.randomBytes(16 * 1024 * 1024)
    const host = new StHostClient(api)
    const sequence = await host.sendSequence(Readable.from([fixture("passthrough")]))
    const instance = await sequence.start({})
    const output = await instance.getStream("output")
    const received = readAll(output)
    const chunks = Array.from({ length: 64 }, (_, i) => data.subarray(i * 256 * 1024, (i + 1) * 256 * 1024))
    await instance.sendInput(Readable.from(chunks), {}, { type: "application/octet-stream" })
    const bytes = await received
    expect(bytes.length).toBe(data.length)
    expect(sha256(bytes)).toBe(sha256(data))
  })

  it("gives a process no end of input from a client that left mid-body; its next input goes on where the bytes stopped", async () => {
    cluster.printOnFailure()
    const id = await cluster.run(Effect.map(
      Effect.flatMap(HostClient, (host) => host.start({ program: { _tag: "Command", command: "cat" } })),
      (info) => info.id
    ))
    const output = Readable.fromWeb((await fetch(`${api}/instance/${id}/stdout`)).body as any)
    const chunks: Array<Buffer> = []
    let echoed = 0
    const echoedAll = new Set<() => void>()
    output.on("data", (chunk: Buffer) => {
      chunks.push(chunk)
      echoed += chunk.length
      for (const check of echoedAll) check()
    })
    const ended = new Promise((resolve) => output.once("end", resolve))
    const echoedAtLeast = (bytes: number) =>
      new Promise<void>((resolve) => {
        const check = () => echoed >= bytes && (echoedAll.delete(check), resolve())
        echoedAll.add(check)
        check()
      })
    // Declares 1 MiB, sends 300 KiB, and leaves once cat echoed them: broken, not ended.
    const partial = Crypto.randomBytes(300 * 1024)
    await new Promise<void>((resolve) => {
      const sent = Http.request(`${api}/instance/${id}/stdin`, {
        method: "POST",
        agent: false,
        headers: { "content-type": "application/octet-stream", "content-length": String(1024 * 1024), "x-end-stream": "true" }
      })
      sent.on("error", () => undefined)
      sent.on("response", (response) => response.resume())
      sent.on("close", () => resolve())
      sent.write(partial)
      void echoedAtLeast(partial.length).then(() => sent.destroy())
    })
    // cat still runs (its stdin was not closed) and takes the rest, then the end.
    const info = await cluster.run(Effect.flatMap(HostClient, (host) => host.get(id)))
    expect(info.status).toBe("running")
    const rest = await call("POST", `/instance/${id}/stdin`, {
      body: "the rest",
      headers: { "content-type": "application/octet-stream", "x-end-stream": "true" }
    })
    expect(rest.status).toBe(200)
    await ended
    expect(Buffer.concat(chunks).equals(Buffer.concat([partial, Buffer.from("the rest")]))).toBe(true)
  })

  it("runs STH-style sequences (Node pipeline, Python context) unchanged through the api-client 0.26.1", async () => {
    cluster.printOnFailure()
    const host = new StHostClient(api)
    for (const [name, args, expected] of [["sth-node", [2], "A,B\nC\n"], ["sth-py", [], "A\nB\nC\n"]] as const) {
      const sequence = await host.sendSequence(Readable.from([fixture(name)]))
      const instance = await sequence.start({ args: [...args] })
      const output = readAll(await instance.getStream("output"))
      await instance.sendInput(Readable.from(["a\nb", "\nc\n"]), {}, { type: "text/plain", end: true })
      expect((await output).toString("utf8")).toBe(expected)
    }
  })

  it("serves shardhub's own API: commands with their full spec, records, logs, stats, restart, stop, kill, remove, runners", async () => {
    cluster.printOnFailure()
    const native = (method: string, path: string, body?: unknown) =>
      call(method, `/../shardhub/v1${path}`, body === undefined ? {} : { headers: jsonHeaders, body: JSON.stringify(body) })
    const started = await native("POST", "/instances", {
      spec: {
        program: { _tag: "Command", command: "sh", args: ["-c", "echo one; echo two; echo $GREETING; sleep 600"] },
        name: "native",
        env: { set: { GREETING: "three" } },
        restart: { mode: "always" },
        labels: { team: "api" }
      }
    })
    expect(started).toMatchObject({ status: 200, json: { name: "native", status: "running", spec: { labels: { team: "api" } } } })
    const id: string = started.json.id
    expect((await native("GET", "/instances")).json.map((info: { id: string }) => info.id)).toContain(id)
    expect((await native("GET", `/instances/${id}`)).json).toMatchObject({ id, runner: expect.stringMatching(/^127\.0\.0\.1:\d+$/), restarts: 0 })

    // The last lines, then (follow) live ones.
    await eventually(async () => (await native("GET", `/instances/${id}/logs`)).text.includes("three") || undefined, { what: "the log" })
    const tail = (await native("GET", `/instances/${id}/logs?tail=2`)).text.trim().split("\n").map((line) => JSON.parse(line).text)
    expect(tail).toEqual(["two", "three"])
    expect((await native("GET", `/instances/${id}/stats`)).json).toMatchObject({ rssBytes: expect.any(Number) })

    const restarted = await native("POST", `/instances/${id}/restart`, { timeoutMs: 2000 })
    expect(restarted).toMatchObject({ status: 200, json: { id, status: "running", restarts: 1 } })
    await eventually(async () => (await native("GET", `/instances/${id}/logs?tail=1`)).text.includes("three") || undefined, { what: "the new process's log" })
    // Following: the last line, then live until the process ends.
    const follow = fetch(`${api}/../shardhub/v1/instances/${id}/logs?tail=1&follow=true`).then((response) => response.text())
    const stopped = await native("POST", `/instances/${id}/stop`, { timeoutMs: 2000 })
    expect(stopped).toMatchObject({ status: 200, json: { id, status: "stopped", signal: "SIGTERM" } })
    expect((await follow).trim().split("\n").map((line) => JSON.parse(line).text)).toEqual(["three"])
    expect((await native("GET", "/instances")).json.map((info: { id: string }) => info.id)).not.toContain(id)
    expect((await native("GET", "/instances?all=true")).json.map((info: { id: string }) => info.id)).toContain(id)
    expect((await native("DELETE", `/instances/${id}`)).status).toBe(200)
    expect((await native("GET", `/instances/${id}`)).status).toBe(404)
    expect((await native("POST", "/instances", { spec: { program: { _tag: "Command", command: "" } } })).status).toBe(400)
    // An invalid probe is named in the 400; nothing starts.
    const probe = await native("POST", "/instances", {
      spec: { program: { _tag: "Command", command: "sleep", args: ["60"] }, liveness: { check: { _tag: "Tcp", port: 8080 }, intervalMs: 0 } }
    })
    expect(probe.status).toBe(400)
    expect(probe.text).toContain("intervalMs")
    const cron = await native("POST", "/instances", { spec: { program: { _tag: "Command", command: "true" }, schedule: { cron: "61 * * * *" } } })
    expect(cron.status).toBe(400)
    expect(cron.text).toContain("not a cron expression")

    // Reload: NDJSON progress, then the report; an unknown name is a 404, a bad body a 400.
    const app = await native("POST", "/instances", { spec: { program: { _tag: "Command", command: "sleep", args: ["600"] }, name: "native-app" } })
    const reload = (await native("POST", "/reload", { target: "native-app", timeoutMs: 2000 })).text.trim().split("\n").map((line) => JSON.parse(line))
    expect(reload.map((step: { _tag?: string }) => step._tag)).toEqual(["Stopped", "Started", "Ready", undefined])
    expect(reload.at(-1)).toMatchObject({ ok: true, reverted: false, replaced: [{ name: "native-app", old: app.json.id }] })
    expect((await native("GET", `/instances/${app.json.id}`)).json).toMatchObject({ status: "stopped" })
    await native("DELETE", `/instances/${reload.at(-1).replaced[0].id}`)
    expect((await native("POST", "/reload", { target: "no-such-app" })).status).toBe(404)
    expect((await native("POST", "/reload", { target: "native-app", parallel: 0 })).status).toBe(400)

    // A bundle: stored by hash, then run in; a hostile archive is a 422, another type a 415.
    const upload = (body: Uint8Array, type = "application/gzip") =>
      fetch(`${api}/../shardhub/v1/bundles`, { method: "POST", headers: { "content-type": type }, body: Buffer.from(body) })
    const bundled = await upload(Zlib.gzipSync(Pack.tar([{ type: "file", path: "hello.txt", data: "hi from a bundle\n" }])))
    expect(bundled.status).toBe(200)
    const { hash } = await bundled.json() as { hash: string }
    expect(hash).toMatch(/^[0-9a-f]{64}$/)
    const catting = await native("POST", "/instances", { spec: { program: { _tag: "Command", command: "sh", args: ["-c", "cat hello.txt; sleep 600"], bundle: hash } } })
    expect(catting.status).toBe(200)
    await eventually(async () => (await native("GET", `/instances/${catting.json.id}/logs`)).text.includes("hi from a bundle") || undefined, { what: "the bundled file's line" })
    await native("DELETE", `/instances/${catting.json.id}`)
    const hostile = await upload(Zlib.gzipSync(Pack.tar([{ type: "file", path: "../../x", data: "owned" }])))
    expect(hostile.status).toBe(422)
    expect(await hostile.json()).toMatchObject({ code: "PackageError", error: expect.stringContaining("..") })
    expect((await upload(new Uint8Array([1]), "text/plain")).status).toBe(415)

    const runners = (await native("GET", "/runners")).json
    expect(runners).toHaveLength(2)
    expect(runners[0]).toMatchObject({ address: expect.any(String), healthy: true, drained: false, shards: expect.any(Number), instances: expect.any(Number) })

    // Drain: NDJSON progress until the runner holds nothing; undrain gives it shards again.
    const [first, second] = runners.map((r: { address: string }) => r.address)
    const drained = (await native("POST", `/runners/${first}/drain`, { parallel: 8 })).text.trim().split("\n").map((line) => JSON.parse(line))
    expect(drained.at(-1)).toEqual({ address: first, instances: 0, shards: 0 })
    expect((await native("GET", "/runners")).json.find((r: { address: string }) => r.address === first)).toMatchObject({ drained: true, healthy: false })
    expect(await native("POST", `/runners/${second}/drain`, {})).toMatchObject({ status: 409, json: { code: "DrainError" } })
    expect(await native("POST", "/runners/127.0.0.1:1/drain", {})).toMatchObject({ status: 404, json: { error: expect.stringContaining("no runner at 127.0.0.1:1") } })
    expect((await native("POST", `/runners/${first}/drain`, { parallel: 0 })).status).toBe(400)
    expect(await native("POST", `/runners/${first}/undrain`)).toMatchObject({ status: 200, json: { address: first } })
    expect((await native("POST", `/runners/${first}/undrain`)).status).toBe(409)
    await cluster.waitForShards()
  })

  it("drives the same flow with the si command (0.26.1)", async () => {
    cluster.printOnFailure()
    const home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-si-"))
    Fs.mkdirSync(Path.join(home, ".si"))
    const si = (...args: Array<string>) =>
      ChildProcess.execFileSync(process.execPath, [Path.join(root, "node_modules/@scramjet/cli/bin/index.js"), ...args], {
        env: { ...process.env, HOME: home },
        encoding: "utf8"
      })
    const packagePath = Path.join(home, "passthrough.tar.gz")
    Fs.writeFileSync(packagePath, fixture("passthrough"))
    si("config", "set", "apiUrl", api)
    expect(si("hub", "version")).toContain("shardhub")
    const sent = si("seq", "send", packagePath)
    const sequenceId = sent.match(/_id: '([^']+)'/)![1]!
    const started = si("seq", "start", sequenceId, "--args", "[\"a\"]")
    const instanceId = started.match(/_id: '([0-9a-f-]{36})',\s+instanceURL/)![1]!
    expect(si("inst", "health", instanceId)).toContain("healthy: true")
    const inputPath = Path.join(home, "input.txt")
    Fs.writeFileSync(inputPath, "via si\n")
    si("inst", "input", instanceId, inputPath, "-t", "text/plain", "-e")
    // `-e` ends the input (x-end-stream: true), so the output ends, and so does `si inst output`.
    expect(si("inst", "output", instanceId)).toBe("via si\n")
    expect(si("inst", "info", instanceId)).toMatch(/status: '(completed|running|stopping)'/)
    expect(si("inst", "ls")).toContain(instanceId)
    expect(si("seq", "delete", sequenceId)).toContain(sequenceId)
    Fs.rmSync(home, { recursive: true, force: true })
  })

  it("serves STH 1.0.1's hub endpoints: config, status, entities, log, audit, topics, sequence overwrite, monitoring", async () => {
    cluster.printOnFailure()
    const host = new StHostClient(api)
    expect(await host.getConfig()).toMatchObject({ service: "shardhub", apiBase: "/api/v1", runtimeAdapter: "process" })
    expect((await call("GET", "/status")).json).toEqual({ cpm: { connected: false }, runners: { total: 2, healthy: 2 } })

    // The hub log (the access log among it) and the audit feed, read while the rest happens.
    const log = readUntil(await host.getLogStream(), (text) => text.includes("GET /api/v1/entities 200"))
    const audit = readUntil(Readable.fromWeb((await fetch(`${api}/audit`)).body! as any), (text) => text.includes("POST /topics") && text.endsWith("\n"))

    // Topics: created through the API, published to, wired to an instance; listed, deleted.
    const created = await call("POST", "/topics", { headers: jsonHeaders, body: JSON.stringify({ id: "made-here", "content-type": "text/plain" }) })
    expect(created).toMatchObject({ status: 200, json: { id: "made-here", origin: { type: "hub" }, state: "flowing", contentType: "text/plain" } })
    expect((await call("POST", "/topics", { headers: jsonHeaders, body: JSON.stringify({ id: "made-here" }) })).status).toBe(400)
    expect((await call("POST", "/topics", { headers: jsonHeaders, body: JSON.stringify({ id: "no spaces" }) })).status).toBe(400)
    await host.sendNamedData("published-here", Readable.from(["x\n"]), {}, "application/x-ndjson", true)
    const wired = await cluster.run(Effect.map(
      Effect.flatMap(HostClient, (client) =>
        client.start({ program: { _tag: "Command", command: "cat" }, topics: { input: "wired-here", contentType: "text/plain" } })),
      (info) => info.id
    ))
    const topics = await host.getTopics() as Array<{ topic: string; contentType: string }>
    for (const [topic, contentType] of [["made-here", "text/plain"], ["published-here", "application/x-ndjson"], ["wired-here", "text/plain"]]) {
      expect(topics).toContainEqual(expect.objectContaining({ topic, topicName: topic, contentType }))
    }
    expect(await call("DELETE", "/topics/made-here", { headers: jsonHeaders })).toMatchObject({ status: 200, json: { message: "Topic made-here removed" } })
    expect((await call("DELETE", "/topics/made-here", { headers: jsonHeaders })).status).toBe(404)
    expect((await call("DELETE", "/topics/wired-here", { headers: jsonHeaders })).status).toBe(409)
    expect((await host.getTopics() as Array<{ topic: string }>).map((t) => t.topic)).not.toContain("made-here")

    // x-end-stream: true ends the topic's stream for its consumers; what comes next starts anew.
    const ended = fetch(`${api}/topic/ended-here`).then((response) => response.text())
    await host.sendNamedData("ended-here", Readable.from(["last words\n"]), {}, "text/plain", true)
    expect(await ended).toBe("last words\n")
    await host.sendNamedData("ended-here", Readable.from(["again\n"]), {}, "text/plain")
    const again = Readable.fromWeb((await fetch(`${api}/topic/ended-here`)).body! as any)
    expect(await readUntil(again, (text) => text.includes("again"))).toBe("again\n")
    again.destroy()

    // A sequence is overwritten in place, unless an instance of it runs.
    const sequence = await host.sendSequence(Readable.from([fixture("passthrough")]))
    const before = (await call("GET", `/sequence/${sequence.id}`)).json
    const instance = await sequence.start({})
    const put = (id: string) =>
      call("PUT", `/sequence/${id}`, { headers: { "content-type": "application/octet-stream" }, body: fixture("features") as unknown as string })
    expect((await put(sequence.id)).status).toBe(409)
    expect((await put("no-such-sequence")).status).toBe(404)

    // Entities: every sequence and instance.
    const entities = (await call("GET", "/entities")).json
    expect(entities.sequences.map((s: { id: string }) => s.id)).toContain(sequence.id)
    expect(entities.instances.map((i: { id: string }) => i.id)).toEqual(expect.arrayContaining([instance.id, wired]))

    // Monitoring at a rate of 5 per second.
    expect(await call("POST", `/instance/${instance.id}/_monitoring_rate`, { headers: jsonHeaders, body: JSON.stringify([4003, { monitoringRate: 5 }]) }))
      .toMatchObject({ status: 202, json: { accepted: true } })
    const monitoring = await fetch(`${api}/instance/${instance.id}/monitoring`)
    const feed = Readable.fromWeb(monitoring.body! as any)
    const beats = await readUntil(feed, (text) => text.split("\n").length > 3)
    expect(JSON.parse(beats.split("\n")[0]!)).toEqual([3001, { healthy: true, processId: expect.any(Number) }])
    feed.destroy()

    // Once it has ended, its health is 404 (as STH), and its sequence can be overwritten.
    await instance.kill({ removeImmediately: false })
    expect((await call("GET", `/instance/${instance.id}/health`)).status).toBe(404)
    expect(await put(sequence.id)).toMatchObject({ status: 200, json: { id: sequence.id } })
    const after = (await call("GET", `/sequence/${sequence.id}`)).json
    expect(after.config.name).not.toBe(before.config.name)
    expect(after.hash).not.toBe(before.hash)

    expect(await log).toMatch(/"level":"INFO","msg":"\S+ GET \/api\/v1\/entities 200 [\d.]+ ms [^"]+","ts":\d+,"from":"gateway"/)
    const records = (await audit).trim().split("\n").map((line) => JSON.parse(line))
    expect(records).toContainEqual(expect.objectContaining({ opState: "REQUEST_END", opCode: "POST /topics", status: 200, method: "POST" }))
    await cluster.run(Effect.flatMap(InstanceClient, (instances) => instances.kill(wired)))
    await host.deleteSequence(sequence.id)
  })

  it("answers _stop at once, and kills an instance that is still stopping", async () => {
    cluster.printOnFailure()
    const id = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const info = yield* host.start({
        program: {
          _tag: "Command",
          command: process.execPath,
          args: ["-e", "process.on('SIGTERM', () => {}); console.log('ignoring SIGTERM'); setInterval(() => {}, 1000)"]
        }
      })
      // Only once it says so does it ignore SIGTERM.
      yield* instances.output(info.id, "stdout").pipe(Stream.take(1), Stream.runDrain)
      return info.id
    }))
    // STH holds this answer for the whole timeout (60 s here); the gateway answers at once.
    const stop = await call("POST", `/instance/${id}/_stop`, { body: JSON.stringify([4001, { timeout: 60_000, canCallKeepalive: false }]), headers: jsonHeaders })
    expect(stop.status).toBe(202)
    expect(stop.json).toMatchObject({ id, status: "stopping" })
    const kill = await call("POST", `/instance/${id}/_kill`, { body: JSON.stringify({ removeImmediately: true }), headers: jsonHeaders })
    expect(kill.status).toBe(202)
    expect(kill.json).toMatchObject({ id, status: "completed", terminated: { reason: "Instance killed" } })
    // removeImmediately: the record is gone too.
    expect((await call("GET", `/instance/${id}`)).status).toBe(404)
  })

  it("answers unknown ids, unknown routes and bad bodies with JSON errors and STH's status codes", async () => {
    cluster.printOnFailure()
    const nope = "no-such-instance"
    const notFound = [
      ["GET", `/instance/${nope}`],
      ["GET", `/instance/${nope}/health`],
      ["GET", `/instance/${nope}/stdout`],
      ["GET", `/instance/${nope}/stderr`],
      ["GET", `/instance/${nope}/output`],
      ["GET", `/instance/${nope}/log`],
      ["GET", `/instance/${nope}/events/x`],
      ["GET", `/instance/${nope}/event/x`],
      ["GET", `/instance/${nope}/once/x`],
      ["POST", `/instance/${nope}/_stop`],
      ["POST", `/instance/${nope}/_kill`],
      ["POST", `/instance/${nope}/input`],
      ["POST", `/instance/${nope}/stdin`],
      ["POST", `/instance/${nope}/inout`],
      ["GET", `/instance/..%2F..%2Fetc`],
      ["GET", "/sequence/no-such-sequence"],
      ["DELETE", "/sequence/no-such-sequence"],
      ["GET", "/sequence/no-such-sequence/instances"],
      ["GET", "/no/such/route"]
    ] as const
    for (const [method, path] of notFound) {
      const response = await call(method, path, path.includes("/_") ? { headers: jsonHeaders } : {})
      expect({ path, status: response.status }).toEqual({ path, status: 404 })
      expect(response.type).toContain("application/json")
      expect(typeof response.json.error).toBe("string")
    }
    const start = await call("POST", "/sequence/no-such-sequence/start", { body: "{}", headers: jsonHeaders })
    expect(start.status).toBe(404)
    const event = await call("POST", `/instance/${nope}/_event`, { body: JSON.stringify([5001, { eventName: "x", message: 1 }]), headers: jsonHeaders })
    expect(event.status).toBe(404)

    const id = await cluster.run(Effect.map(
      Effect.flatMap(HostClient, (host) => host.start({ program: { _tag: "Command", command: "cat" } })),
      (info) => info.id
    ))
    const bad = [
      // Malformed JSON, JSON of the wrong shape, a body that does not say it is JSON.
      ["POST", `/instance/${id}/_event`, "{nope", jsonHeaders, 400],
      ["POST", `/instance/${id}/_event`, JSON.stringify({ message: 1 }), jsonHeaders, 400],
      ["POST", `/instance/${id}/_stop`, JSON.stringify({ timeout: "soon" }), jsonHeaders, 400],
      ["POST", `/instance/${id}/_stop`, JSON.stringify({ timeout: 1 }), { "content-type": "text/plain" }, 400],
      ["POST", "/sequence/x/start", JSON.stringify({ args: "not an array" }), jsonHeaders, 400],
      // Content types the stream endpoints do not take.
      ["POST", `/instance/${id}/stdin`, "x", { "content-type": "text/html" }, 415],
      ["POST", `/instance/${id}/input`, "x", { "content-type": "image/png" }, 415],
      ["POST", "/topic/t", "x", { "content-type": "image/png" }, 400],
      // Topic names: 1-128 letters, digits, '.', '_', '-'.
      ["POST", `/topic/${"a".repeat(3000)}`, "x", { "content-type": "text/plain" }, 400],
      ["POST", "/topic/bad%20name", "x", { "content-type": "text/plain" }, 400],
      ["POST", "/sequence", "x", { "content-type": "text/html" }, 415],
      // Not a package.
      ["POST", "/sequence", "not a tarball", { "content-type": "application/octet-stream" }, 422],
      // Over the JSON limit.
      ["POST", `/instance/${id}/_event`, JSON.stringify({ eventName: "x", message: "y".repeat(2 * 1024 * 1024) }), jsonHeaders, 413]
    ] as const
    for (const [method, path, body, headers, status] of bad) {
      const response = await call(method, path, { body, headers: { ...headers } })
      expect({ path, body: body.slice(0, 40), status: response.status }).toEqual({ path, body: body.slice(0, 40), status })
      expect(typeof response.json.error).toBe("string")
    }

    expect((await call("GET", `/topic/${"b".repeat(3000)}`)).status).toBe(400)

    // A package declared larger than the limit is refused before its body is read.
    const declared = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = Http.request(`${api}/sequence`, {
        method: "POST",
        headers: { "content-type": "application/octet-stream", "content-length": String(300 * 1024 * 1024) }
      }, (response) => {
        let body = ""
        response.on("data", (chunk) => (body += chunk))
        response.on("end", () => {
          resolve({ status: response.statusCode!, body })
          request.destroy()
        })
      })
      request.on("error", reject)
      request.write("x")
    })
    expect(declared.status).toBe(413)
    expect(JSON.parse(declared.body).code).toBe("ERR_PAYLOAD_TOO_LARGE")

    // The cat instance took no harm: it still echoes.
    const echoed = await cluster.run(Effect.flatMap(InstanceClient, (instances) =>
      instances.inout(id, Stream.make(new TextEncoder().encode("still fine"))).pipe(Stream.runCollect)))
    expect(Buffer.from(concat(echoed)).toString()).toBe("still fine")
  })

  it("serves its OpenAPI document, a docs page and Prometheus metrics, and logs every request", async () => {
    const sleeper = await cluster.run(Effect.map(
      Effect.flatMap(HostClient, (host) => host.start({ program: { _tag: "Command", command: "sleep", args: ["600"] } })),
      (info) => info.id
    ))
    const openapi = await call("GET", "/openapi.json")
    expect(openapi.status).toBe(200)
    expect(Object.keys(openapi.json.paths)).toEqual(expect.arrayContaining(["/api/v1/sequence/{id}/start", "/api/v1/instance/{id}/_stop"]))
    const docs = await fetch(`${api}/docs`)
    expect(docs.status).toBe(200)
    expect(docs.headers.get("content-type")).toContain("text/html")
    // Bytes through a data port, and a call through the gateway, for the counters below.
    const echoed = await cluster.run(Effect.gen(function*() {
      const info = yield* Effect.flatMap(HostClient, (host) => host.start({ program: { _tag: "Command", command: "cat" } }))
      const instances = yield* InstanceClient
      const out = yield* instances.inout(info.id, Stream.make(new TextEncoder().encode("12345"))).pipe(Stream.runCollect)
      return out.reduce((sum, chunk) => sum + chunk.length, 0)
    }))
    expect(echoed).toBe(5)
    expect((await call("GET", `/instance/${sleeper}`)).status).toBe(200)
    // The gateway: the cluster as the store sees it (read with a Prometheus text parser).
    const family = (families: ReturnType<typeof parsePrometheus>, name: string) => families.find((f) => f.name === name)
    const gatewayMetrics = parsePrometheus(await fetch(api.replace("/api/v1", "/metrics")).then((r) => r.text()))
    expect(family(gatewayMetrics, "shardhub_instances")?.metrics).toContainEqual({ labels: { status: "running" }, value: expect.stringMatching(/^[1-9]\d*$/) })
    expect(family(gatewayMetrics, "shardhub_runners")?.metrics).toContainEqual({ labels: { healthy: "true" }, value: "2" })
    // …and its own: how long its calls to instances took.
    expect(family(gatewayMetrics, "shardhub_instance_call_duration")).toMatchObject({ type: "HISTOGRAM" })
    // Each runner: what happened on it (Effect's metrics, cluster ones included) and its processes.
    const runnerMetrics = () =>
      Promise.all(cluster.runners.map(async (runner) => {
        const [, url] = await runner.waitFor(/^metrics\s+(http:\S+)$/m)
        return fetch(url!).then((r) => r.text())
      }))
    const owner = parsePrometheus((await runnerMetrics()).find((text) => text.includes(`name="${sleeper}"`))!)
    const rss = family(owner, "shardhub_process_rss_bytes")?.metrics.find((m) => m.labels?.["name"] === sleeper)
    expect(Number(rss?.value)).toBeGreaterThan(0)
    expect(family(owner, "shardhub_instance_starts_total")).toMatchObject({ type: "COUNTER" })
    expect(Number(family(owner, "shardhub_instance_starts_total")?.metrics.find((m) => m.labels?.["outcome"] === "started")?.value)).toBeGreaterThan(0)
    expect(family(owner, "shardhub_instance_start_duration")).toMatchObject({ type: "HISTOGRAM" })
    expect(Number(family(owner, "shardhub_instance_start_duration")?.metrics[0]?.count)).toBeGreaterThan(0)
    expect(Number(family(owner, "effect_cluster_shards")?.metrics[0]?.value)).toBeGreaterThan(0)
    await cluster.run(Effect.flatMap(InstanceClient, (instances) => instances.kill(sleeper)))
    const bytes = (await runnerMetrics()).map(parsePrometheus).flatMap((families) => family(families, "shardhub_instance_bytes_total")?.metrics ?? [])
    for (const direction of ["in", "out"]) {
      expect(bytes.filter((m) => m.labels?.["direction"] === direction).reduce((sum, m) => sum + Number(m.value), 0)).toBeGreaterThanOrEqual(5)
    }
    // A process counts the bytes of a connection it took itself (the runner does not see them):
    // an input and a direct inout through a Node sequence, once each connection closed.
    const moved = async () => {
      const all = (await runnerMetrics()).map(parsePrometheus).flatMap((families) => family(families, "shardhub_instance_bytes_total")?.metrics ?? [])
      const sum = (direction: string) => all.filter((m) => m.labels?.["direction"] === direction).reduce((total, m) => total + Number(m.value), 0)
      return { in: sum("in"), out: sum("out") }
    }
    const before = await moved()
    const direct = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const seq = yield* host.sendSequence(fixture("passthrough"))
      const a = yield* host.startSequence(seq.id)
      yield* instances.input(a.id, Stream.make(new TextEncoder().encode("1234")))
      const b = yield* host.startSequence(seq.id)
      return yield* instances.inout(b.id, Stream.make(new TextEncoder().encode("123456")), { direct: true }).pipe(Stream.decodeText(), Stream.mkString)
    }))
    expect(direct).toBe("123456")
    const after = await eventually(async () => {
      const now = await moved()
      return now.in - before.in >= 10 && now.out - before.out >= 6 ? now : undefined
    }, { what: "the direct connections' bytes in the runners' metrics" })
    expect({ in: after.in - before.in, out: after.out - before.out }).toEqual({ in: 10, out: 6 })
    const ended = (await runnerMetrics()).map(parsePrometheus).map((families) =>
      family(families, "shardhub_instance_ends_total")?.metrics.find((m) => m.labels?.["status"] === "stopped")?.value)
    expect(ended.some((value) => Number(value) > 0)).toBe(true)
    // The access log: time, method, path, status, time to the answer, client address.
    expect((await call("GET", "/no-such-endpoint")).status).toBe(404)
    for (const line of ["GET /api/v1/openapi.json 200", "GET /metrics 200", "GET /api/v1/no-such-endpoint 404"]) {
      await gateway.waitFor(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z ${line.replaceAll(".", "\\.")} [\\d.]+ ms 127\\.0\\.0\\.1$`, "m"), 5000)
    }
  })

  it.skipIf(Attacker.reason !== undefined)("beyond loopback: makes a token when none is set; other users and machines need it, the owner does not", async () => {
    cluster.printOnFailure()
    const home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-open-gateway-"))
    const { process: open, url } = await cluster.gateway("open-gateway", { SHARDHUB_GATEWAY_HOST: "0.0.0.0", SHARDHUB_HOME: home })
    const tokenFile = Path.join(home, "gateway.token")
    await open.waitFor(new RegExp(`other machines and users send Authorization: Bearer <token> \\(the token in ${tokenFile.replaceAll(".", "\\.")}\\)`), 10_000)
    expect(Fs.statSync(tokenFile).mode & 0o777).toBe(0o600)
    const token = Fs.readFileSync(tokenFile, "utf8").trim()
    const base = url.replace("0.0.0.0", "127.0.0.1")
    // The owner (this test runs as the gateway's user) needs nothing.
    expect((await fetch(`${base}/api/v1/instances`)).status).toBe(200)
    // Another user: refused without the token or with a wrong one, let in with it.
    for (const authorization of [undefined, "Bearer wrong", token]) {
      const response = await Attacker.request(`${base}/api/v1/instances`, { headers: authorization === undefined ? {} : { authorization } })
      expect(response.status).toBe(401)
      expect(JSON.parse(response.body)).toMatchObject({ code: "ERR_UNAUTHORIZED", error: expect.stringMatching(/send Authorization: Bearer <token>/) })
    }
    expect((await Attacker.request(`${base}/api/v1/instances`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200)
    // A gateway restarted on the same home keeps the token.
    open.child.kill("SIGTERM")
    await open.exited
    await cluster.gateway("open-gateway-again", { SHARDHUB_GATEWAY_HOST: "0.0.0.0", SHARDHUB_HOME: home })
    expect(Fs.readFileSync(tokenFile, "utf8").trim()).toBe(token)
  })

  it.skipIf(Attacker.reason !== undefined)("with SHARDHUB_TOKEN set, another user needs exactly it on every endpoint but the dashboard's files", async () => {
    cluster.printOnFailure()
    const { url } = await cluster.gateway("token-gateway", { SHARDHUB_GATEWAY_HOST: "0.0.0.0", SHARDHUB_TOKEN: "s3cret-s3cret-s3cret" })
    const base = url.replace("0.0.0.0", "127.0.0.1")
    for (const authorization of [undefined, "Bearer wrong", "s3cret-s3cret-s3cret"]) {
      const response = await Attacker.request(`${base}/api/v1/instances`, { headers: authorization === undefined ? {} : { authorization } })
      expect(response.status).toBe(401)
    }
    const ok = await Attacker.request(`${base}/api/v1/instances`, { headers: { authorization: "Bearer s3cret-s3cret-s3cret" } })
    expect(ok.status).toBe(200)
    // shardhub's own API too; only the dashboard's files (no data) load without it.
    expect((await Attacker.request(`${base}/api/shardhub/v1/instances`)).status).toBe(401)
    expect((await Attacker.request(`${base}/metrics`)).status).toBe(401)
    const page = await Attacker.request(`${base}/`)
    expect(page.status).toBe(200)
    expect((await Attacker.request(`${base}/dashboard.js?x`)).status).toBe(200)
    expect((await Attacker.request(`${base}/dashboard.json`)).status).toBe(401)
    // The published client sends it through its default headers (run as the owner here).
    const { ClientUtils } = await import("@scramjet/client-utils")
    ClientUtils.setDefaultHeaders({ Authorization: "Bearer s3cret-s3cret-s3cret" })
    try {
      expect(await new StHostClient(`${base}/api/v1`).getVersion()).toMatchObject({ service: "shardhub" })
    } finally {
      ClientUtils.setDefaultHeaders({})
    }
  })

  it("refuses what a web page can make a browser send: cross-origin posts, rebound Host names, blind uploads", async () => {
    cluster.printOnFailure()
    const port = new URL(api).port
    const count = async () => JSON.parse((await request(`${api}/sequences`)).text).length as number
    const before = await count()
    const pkg = fixture("passthrough")
    // fetch(".../sequence", {mode: "no-cors", method: "POST", body}): a "simple" request, no preflight.
    const upload = await request(`${api}/sequence`, {
      method: "POST",
      headers: { origin: "http://evil.example", "content-type": "text/plain", "sec-fetch-site": "cross-site" },
      body: pkg
    })
    expect(upload.status).toBe(403)
    expect(JSON.parse(upload.text).code).toBe("ERR_FORBIDDEN")
    // The same upload without the browser's marks but without a Content-Type: refused too.
    expect((await request(`${api}/sequence`, { method: "POST", body: pkg })).status).toBe(415)
    expect(await count()).toBe(before)

    // A start by name with an empty body: from another origin, or without the JSON type.
    const sequence = await new StHostClient(api).sendSequence(Readable.from([pkg]))
    const startPath = `${api}/sequence/${sequence.id}/start`
    expect((await request(startPath, { method: "POST", headers: { origin: "http://evil.example" } })).status).toBe(403)
    expect((await request(startPath, { method: "POST", headers: { origin: "null" } })).status).toBe(403)
    expect((await request(startPath, { method: "POST" })).status).toBe(400)
    // A GET a page embeds (<img>, <script>): Sec-Fetch-Site says where it comes from.
    expect((await request(`${api}/instances`, { headers: { "sec-fetch-site": "cross-site" } })).status).toBe(403)
    // DNS rebinding: the page's own name now resolves to 127.0.0.1, and the browser says so in Host.
    expect((await request(`${api}/instances`, { headers: { host: `evil.example:${port}` } })).status).toBe(403)
    expect(JSON.parse((await request(`${api}/instances`)).text).map((i: { sequence: string }) => i.sequence)).not.toContain(sequence.id)

    // This machine's names pass, and so does the gateway's own origin.
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]) {
      expect((await request(`${api}/version`, { headers: { host } })).status).toBe(200)
    }
    expect((await request(`${api}/version`, { headers: { origin: `http://127.0.0.1:${port}`, "sec-fetch-site": "same-origin" } })).status).toBe(200)
    // Without CORS configured, no page is told it may read.
    expect((await request(`${api}/version`, { headers: { origin: "http://evil.example" } })).headers["access-control-allow-origin"]).toBeUndefined()
  })

  it("grants CORS only to the listed origins, closes slow headers, caps connections per address, and leaves streams alone", async () => {
    cluster.printOnFailure()
    const { url } = await cluster.gateway("guarded-gateway", {
      SHARDHUB_GATEWAY_CORS_ORIGINS: "https://ops.example",
      SHARDHUB_GATEWAY_ALLOWED_HOSTS: "shardhub.internal",
      SHARDHUB_GATEWAY_HEADERS_TIMEOUT: "1 second",
      SHARDHUB_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS: "4"
    })
    const base = `${url}/api/v1`
    const preflight = await request(`${base}/sequence/x/start`, {
      method: "OPTIONS",
      headers: { origin: "https://ops.example", "access-control-request-method": "POST", "access-control-request-headers": "content-type" }
    })
    expect(preflight.status).toBe(204)
    expect(preflight.headers).toMatchObject({ "access-control-allow-origin": "https://ops.example", "access-control-allow-methods": expect.stringContaining("POST") })
    const read = await request(`${base}/version`, { headers: { origin: "https://ops.example" } })
    expect(read.status).toBe(200)
    expect(read.headers["access-control-allow-origin"]).toBe("https://ops.example")
    expect((await request(`${base}/version`, { headers: { origin: "https://other.example" } })).status).toBe(403)
    expect((await request(`${base}/version`, { headers: { host: "shardhub.internal" } })).status).toBe(200)

    // A long-lived output stream of a silent instance, open across the slow-headers check below.
    const id = await cluster.run(Effect.map(
      Effect.flatMap(HostClient, (host) => host.start({ program: { _tag: "Command", command: "cat" } })),
      (info) => info.id
    ))
    const output = await new Promise<Http.IncomingMessage>((resolve, reject) =>
      Http.get(`${base}/instance/${id}/stdout`, { agent: false }, resolve).on("error", reject))
    expect(output.statusCode).toBe(200)
    let streamed = ""
    output.on("data", (chunk) => (streamed += chunk))

    // Slowloris: headers that never finish are cut off (the server answers 408 and closes).
    const answer = await closedAfter(url, "GET /api/v1/version HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    expect(answer).toMatch(/^HTTP\/1\.1 408/)

    // Three connections more make four from this address: the fifth is closed unanswered.
    const held = await Promise.all([1, 2, 3].map(() =>
      new Promise<Http.IncomingMessage>((resolve, reject) => Http.get(`${base}/instance/${id}/stderr`, { agent: false }, resolve).on("error", reject))))
    await expect(request(`${base}/version`)).rejects.toThrow(/socket hang up|ECONNRESET/)
    held[0]!.destroy()
    await new Promise((resolve) => held[0]!.socket?.once("close", resolve) ?? resolve(undefined))
    // Once one closes, the address may connect again (the server sees the close a moment later).
    let again = 0
    for (let attempt = 0; attempt < 50 && again !== 200; attempt++) again = (await request(`${base}/version`).catch(() => ({ status: 0 }))).status
    expect(again).toBe(200)
    for (const response of held.slice(1)) response.destroy()

    // The output stream outlived the headers timeout and still carries the instance's bytes.
    await cluster.run(Effect.flatMap(InstanceClient, (instances) => instances.input(id, Stream.make(new TextEncoder().encode("late\n")), { end: false })))
    await vi.waitFor(() => expect(streamed).toBe("late\n"), { timeout: 10_000 })
    output.destroy()
  })

  it("at the per-address cap, idle keep-alive connections give way to a new one; connections in the middle of a request never do", async () => {
    cluster.printOnFailure()
    const { url } = await cluster.gateway("pooling-gateway", { SHARDHUB_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS: "4" })
    const { hostname, port } = new URL(url)
    /** A keep-alive connection that made one request, got its answer, and stays open. */
    const pooled = () =>
      new Promise<{ readonly socket: Net.Socket; readonly closed: Promise<void> }>((resolve, reject) => {
        const socket = Net.connect({ host: hostname, port: Number(port) }, () =>
          socket.write(`GET /api/v1/version HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`))
        const closed = new Promise<void>((done) => socket.once("close", () => done()))
        socket.once("close", () => reject(new Error("closed before its answer")))
        let received = ""
        socket.on("data", (chunk) => {
          received += chunk
          if (/^HTTP\/1\.1 200[\s\S]*\r\n\r\n[\s\S]*\}$/.test(received)) resolve({ socket, closed })
        })
        socket.on("error", reject)
      })
    // A client that pools connections without reusing them: 12 requests, 3 times the cap, all answered.
    const idle: Array<Awaited<ReturnType<typeof pooled>>> = []
    for (let i = 0; i < 12; i++) idle.push(await pooled())
    // The cap held: the 8 oldest were closed to make room, the newest 4 are open.
    await Promise.all(idle.slice(0, 8).map((connection) => connection.closed))
    expect(idle.slice(8).map((connection) => connection.socket.readyState)).toEqual(["open", "open", "open", "open"])
    for (const connection of idle) connection.socket.destroy()

    // Four connections in the middle of a request (output streams) are never taken: a fifth is refused.
    const id = await cluster.run(Effect.map(
      Effect.flatMap(HostClient, (host) => host.start({ program: { _tag: "Command", command: "cat" } })),
      (info) => info.id
    ))
    await eventually(async () => (await request(`${url}/api/v1/version`)).status === 200 || undefined, { what: "the closed connections to be gone" })
    const streams = await Promise.all([1, 2, 3, 4].map(() =>
      new Promise<Http.IncomingMessage>((resolve, reject) => Http.get(`${url}/api/v1/instance/${id}/stdout`, { agent: false }, resolve).on("error", reject))))
    await expect(request(`${url}/api/v1/version`)).rejects.toThrow(/socket hang up|ECONNRESET/)
    for (const stream of streams) stream.destroy()
    await cluster.run(Effect.flatMap(InstanceClient, (instances) => instances.kill(id)))
  })

  it("keeps serving, and loses no instance's data, through thousands of malformed requests", async () => {
    cluster.printOnFailure()
    const data = Crypto.randomBytes(4 * 1024 * 1024)
    const id = await cluster.run(Effect.map(
      Effect.flatMap(HostClient, (host) => host.start({ program: { _tag: "Command", command: "cat" } })),
      (info) => info.id
    ))
    const through = cluster.run(Effect.flatMap(InstanceClient, (instances) =>
      instances.inout(id, Stream.fromIterable(Array.from({ length: 64 }, (_, i) => data.subarray(i * 65536, (i + 1) * 65536)))).pipe(
        Stream.runCollect
      )))
    const paths = [
      "/instance/:id", "/instance/:id/_stop", "/instance/:id/_kill", "/instance/:id/_event", "/instance/:id/input",
      "/instance/:id/stdin", "/instance/:id/once/:id", "/sequence", "/sequence/:id", "/sequence/:id/start",
      "/:id", "/instance/:id/:id/:id"
    ]
    const types = ["application/json", "text/plain", "application/octet-stream", "", "multipart/form-data; boundary=x", "application/json; charset=latin1"]
    const random = (n: number) => Math.floor(Math.random() * n)
    const garbage = () => {
      const choice = random(5)
      if (choice === 0) return new Uint8Array(Crypto.randomBytes(random(2048)))
      if (choice === 1) return JSON.stringify([random(9999), { eventName: Crypto.randomBytes(4).toString("hex"), timeout: -random(5) }])
      if (choice === 2) return JSON.stringify({ timeout: "x".repeat(random(100)), args: random(3), removeImmediately: "yes" })
      if (choice === 3) return "{".repeat(random(500))
      return ""
    }
    const statuses = new Map<number, number>()
    const one = async () => {
      const path = paths[random(paths.length)]!.replace(/:id/g, () => encodeURIComponent(Crypto.randomBytes(random(40) + 1).toString(random(2) === 0 ? "hex" : "latin1")))
      const type = types[random(types.length)]!
      const method = ["GET", "POST", "DELETE", "PUT"][random(4)]!
      const response = await fetch(`${api}${path}`, {
        method,
        signal: AbortSignal.timeout(30_000),
        headers: type === "" ? {} : { "content-type": type },
        ...(method === "GET" ? {} : { body: garbage() })
      }).catch((error) => {
        throw new Error(`${method} ${path} (${type}): ${error}`)
      })
      const text = await response.text().catch((error) => {
        throw new Error(`${method} ${path} (${type}) answered ${response.status} but its body: ${error}`)
      })
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
      if (response.status >= 400) {
        expect({ path, status: response.status, json: typeof JSON.parse(text).error }).toEqual({ path, status: response.status, json: "string" })
      }
      if (response.status >= 500) throw new Error(`${method} ${path} (${type}) answered ${response.status}: ${text}`)
    }
    for (let round = 0; round < 125; round++) await Promise.all(Array.from({ length: 16 }, one))
    expect([...statuses.values()].reduce((a, b) => a + b, 0)).toBe(2000)

    expect((await call("GET", "/version")).status).toBe(200)
    const out = concat(await through)
    expect(out.length).toBe(data.length)
    expect(sha256(out)).toBe(sha256(data))
  }, 300_000)
})
