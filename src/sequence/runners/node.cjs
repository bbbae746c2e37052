"use strict"
/**
 * shardhub's in-child runner for Node sequences. Plain JavaScript that loads nothing else until
 * a sequence uses scramjet's DataStream, so an instance starts almost as fast as bare `node`.
 *
 *   node node.cjs <package dir> <main>
 *   env SHARDHUB_SEQUENCE_ARGS (JSON array), SHARDHUB_APP_CONFIG (JSON object), SHARDHUB_INSTANCE_ID
 *
 *   node node.cjs --spare     started ahead (src/process/Spares.ts): loads what it needs and
 *                             waits on fd 3 for {"$shardhub":"become","args","env","cwd"}
 *
 * The runner (ProcessManager) gives it:
 * - fd 3: the message channel, NDJSON both ways. In: `{"event","data"}`,
 *   `{"$shardhub":"stop","timeoutMs","canCallKeepalive"}`, `{"$shardhub":"kill"}`. Out:
 *   `{"$shardhub":"ready"}`, `{"event","data"}`, `{"$shardhub":"health","healthy"}`,
 *   `{"$shardhub":"keepAlive","ms"}`, `{"$shardhub":"log","level","text"}`,
 *   `{"$shardhub":"topics","requires"|"provides","contentType"}`, `{"$shardhub":"bytes","in","out"}`.
 *   Also in: `{"$shardhub":"connection","ticket","kind","end","head"}` (see fd 6).
 * - fd 4: input — `Content-Type: <type>\r\n\r\n`, then the body.
 * - fd 5: output.
 * - fd 6 (when given): a TCP socket listening on loopback, where a client the runner sent here
 *   with a `connection` ticket dials in: its input (and, for `inout`, this process's output) then
 *   go past the runner (see `takeConnection` and src/instance/Direct.ts).
 * stdin/stdout/stderr stay the process's own.
 *
 * The programming model is STH's: `module.exports = function (input, ...args)` (or an array of
 * such functions, a pipeline); `this` offers on/emit, addStopHandler, addKillHandler, keepAlive,
 * addMonitoringHandler, logger, config, instanceId, end, destroy. The input (and what each stage
 * passes to the next) becomes a scramjet DataStream when a DataStream method is used on it, as
 * in STH (scramjet is loaded only then). Whatever the function returns (a stream, async
 * iterable, promise or value) is the output: Buffers and strings as raw bytes, anything else as
 * NDJSON.
 *
 * Exit codes (STH's): 0 the output ended, 21 bad `main`, 22 failed on start, 23 failed while
 * running, 101 uncaught exception, 137 killed, 138 stopped.
 */
const Net = require("node:net")
const Path = require("node:path")
const { Readable } = require("node:stream")
const { StringDecoder } = require("node:string_decoder")

const EXIT = { done: 0, badMain: 21, startFailed: 22, failed: 23, uncaught: 101, killed: 137, stopped: 138 }

/** Started ahead (`--spare`): it waits to be told which sequence it runs (`become`). */
const spare = process.argv[2] === "--spare"
let dir, main, args, appConfig, instanceId
/** Takes the sequence from argv and the environment. */
const configure = () => {
  ;[dir, main] = process.argv.slice(2)
  args = JSON.parse(process.env.SHARDHUB_SEQUENCE_ARGS || "[]")
  appConfig = JSON.parse(process.env.SHARDHUB_APP_CONFIG || "{}")
  instanceId = process.env.SHARDHUB_INSTANCE_ID || ""
  delete process.env.SHARDHUB_SEQUENCE_ARGS
  delete process.env.SHARDHUB_APP_CONFIG
}

const channel = new Net.Socket({ fd: 3, readable: true, writable: true })
const inputSocket = new Net.Socket({ fd: 4, readable: true, writable: false })
const outputSocket = new Net.Socket({ fd: 5, readable: false, writable: true })
channel.on("error", () => {})
inputSocket.on("error", () => {})
outputSocket.on("error", () => {})

const send = (message) => {
  if (!channel.destroyed) channel.write(JSON.stringify(message) + "\n")
}

// ---- leaving ----------------------------------------------------------------------------

let leaving = false
/** Ends the output and the channel, then exits with `code` (at most 2 s later). */
const leave = (code) => {
  if (leaving) return
  leaving = true
  process.exitCode = code
  let pending = 2
  const done = () => {
    if (--pending === 0) process.exit(code)
  }
  setTimeout(() => process.exit(code), 2000).unref()
  for (const report of taken) report()
  if (output !== outputSocket) {
    pending++
    output.end(done)
  }
  outputSocket.end(done)
  channel.end(done)
}

const fatal = (code, error) => {
  process.stderr.write(`${error && error.stack ? error.stack : String(error)}\n`)
  leave(code)
}

process.on("uncaughtException", (error) => fatal(EXIT.uncaught, error))
process.on("unhandledRejection", (error) => fatal(EXIT.uncaught, error))

// ---- context ----------------------------------------------------------------------------

const listeners = new Map()
const stopHandlers = []
const killHandlers = []
const monitoringHandlers = []
let keepAliveMs = 0

const format = (values) => values.map((v) => typeof v === "string" ? v : v instanceof Error ? v.stack : JSON.stringify(v)).join(" ")
const logger = Object.fromEntries(["trace", "debug", "info", "warn", "error", "fatal"].map((level) => [
  level,
  (...values) => send({ $shardhub: "log", level, text: format(values) })
]))
logger.log = logger.info

let hub
const context = {
  instanceId: "",
  config: {},
  logger,
  on(name, listener) {
    if (!listeners.has(name)) listeners.set(name, [])
    listeners.get(name).push(listener)
    return this
  },
  off(name, listener) {
    const list = listeners.get(name)
    if (list) listeners.set(name, list.filter((l) => l !== listener))
    return this
  },
  emit(name, data) {
    send({ event: String(name), data: data === undefined ? null : data })
    return this
  },
  addStopHandler(handler) {
    stopHandlers.push(handler)
    return this
  },
  addKillHandler(handler) {
    killHandlers.push(handler)
    return this
  },
  addMonitoringHandler(handler) {
    monitoringHandlers.push(handler)
    return this
  },
  /** During a stop that allows it: keep running (the stop is called off). */
  keepAlive(ms = 0) {
    keepAliveMs = Math.max(1, Number(ms) || 0)
    send({ $shardhub: "keepAlive", ms: keepAliveMs })
    return this
  },
  /**
   * STH's `this.hub`: a HostClient of `@scramjet/api-client` on the gateway the runner knows
   * (`SHARDHUB_GATEWAY_URL` on the runner; `shardhub up` sets it), made on first use. With the
   * instance's hub credential (`SHARDHUB_HUB_TOKEN`, when its spec has `hub: true`) it sends
   * that; without it, the gateway lets it in only when it runs as the gateway's own user.
   */
  get hub() {
    if (hub !== undefined) return hub
    const url = process.env.SHARDHUB_HUB_URL
    if (!url) throw new Error("this.hub: this runner knows no gateway (set SHARDHUB_GATEWAY_URL on the runner; shardhub up sets it)")
    const client = require.resolve("@scramjet/api-client", { paths: [dir, __dirname] })
    const { HostClient } = require(client)
    const token = process.env.SHARDHUB_HUB_TOKEN
    if (token) {
      const { ClientUtils } = require(require.resolve("@scramjet/client-utils", { paths: [Path.dirname(client)] }))
      ClientUtils.setDefaultHeaders({ Authorization: `Bearer ${token}` })
    }
    return (hub = new HostClient(url))
  },
  /** Ends the instance as completed. */
  end() {
    leave(EXIT.done)
    return this
  },
  destroy(error) {
    if (error) fatal(EXIT.failed, error)
    else leave(EXIT.done)
    return this
  }
}

// ---- health -----------------------------------------------------------------------------

const checkHealth = async () => {
  if (monitoringHandlers.length === 0) return
  let healthy = true
  const details = {}
  for (const handler of monitoringHandlers) {
    try {
      const result = await handler.call(context, { healthy })
      if (result === false || (result && result.healthy === false)) healthy = false
      if (result && typeof result === "object") Object.assign(details, result)
    } catch {
      healthy = false
    }
  }
  send({ $shardhub: "health", ...details, healthy })
}
let healthTimer

// ---- control ----------------------------------------------------------------------------

const withTimeout = (promise, ms) =>
  Promise.race([promise, new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)).unref())])

const stop = async (timeoutMs, canCallKeepalive) => {
  keepAliveMs = 0
  const started = Date.now()
  for (const handler of stopHandlers) {
    try {
      await withTimeout(Promise.resolve(handler.call(context, timeoutMs, canCallKeepalive)), timeoutMs - (Date.now() - started))
    } catch (error) {
      process.stderr.write(`stop handler failed: ${error && error.stack ? error.stack : error}\n`)
    }
  }
  if (canCallKeepalive && keepAliveMs > 0) return
  leave(EXIT.stopped)
}

const kill = () => {
  for (const handler of killHandlers) {
    try {
      handler.call(context)
    } catch {}
  }
  leave(EXIT.killed)
}

let buffered = ""
channel.setEncoding("utf8")
channel.on("data", (text) => {
  buffered += text
  let newline
  while ((newline = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, newline)
    buffered = buffered.slice(newline + 1)
    let message
    try {
      message = JSON.parse(line)
    } catch {
      continue
    }
    if (message === null || typeof message !== "object") continue
    if (message.$shardhub === "become") become(message)
    else if (message.$shardhub === "stop") stop(Number(message.timeoutMs) || 0, message.canCallKeepalive === true)
    else if (message.$shardhub === "kill") kill()
    else if (message.$shardhub === "connection") expect(message)
    else if (typeof message.event === "string") {
      for (const listener of listeners.get(message.event) || []) {
        try {
          listener.call(context, message.data)
        } catch (error) {
          fatal(EXIT.failed, error)
        }
      }
    }
  }
})
// The runner is gone (it would have killed us): nothing to serve any more.
channel.on("end", () => leave(EXIT.stopped))

// ---- input ------------------------------------------------------------------------------

/** Where input is read from now: fd 4, or a connection taken (`takeConnection`). */
let inputSource = inputSocket
/** Takes bytes of input (the header first, then the body), until `endInput`. */
let feedInput = () => {}
let endInput = () => {}

/** Input as a readable of Buffers, strings or objects, by the content type of its header. */
const makeInput = () => {
  const input = new Readable({ objectMode: true, read() { inputSource.resume() } })
  let header = Buffer.alloc(0)
  let decode
  let ended = false
  const push = (value) => {
    if (!input.push(value)) inputSource.pause()
  }
  const decoderFor = (type) => {
    if (/x-ndjson/.test(type)) {
      const text = new StringDecoder("utf8")
      let rest = ""
      const lines = (chunk) => {
        rest += chunk
        let newline
        while ((newline = rest.indexOf("\n")) >= 0) {
          const line = rest.slice(0, newline).trim()
          rest = rest.slice(newline + 1)
          if (line === "") continue
          try {
            push(JSON.parse(line))
          } catch {}
        }
      }
      return { data: (chunk) => lines(text.write(chunk)), end: () => lines(text.end() + "\n") }
    }
    if (/^text\//.test(type)) {
      const text = new StringDecoder("utf8")
      return {
        data: (chunk) => {
          const s = text.write(chunk)
          if (s !== "") push(s)
        },
        end: () => {
          const s = text.end()
          if (s !== "") push(s)
        }
      }
    }
    return { data: push, end: () => {} }
  }
  feedInput = (chunk) => {
    if (ended) return
    if (decode !== undefined) return decode.data(chunk)
    header = Buffer.concat([header, chunk])
    const end = header.indexOf("\r\n\r\n")
    if (end < 0) {
      if (header.length > 4096) input.destroy(new Error("input has no Content-Type header"))
      return
    }
    const match = /content-type:\s*([^\r\n;]+)/i.exec(header.subarray(0, end).toString("latin1"))
    input.contentType = match ? match[1].trim().toLowerCase() : "application/octet-stream"
    decode = decoderFor(input.contentType)
    const body = header.subarray(end + 4)
    header = undefined
    if (body.length > 0) decode.data(body)
  }
  endInput = () => {
    if (ended) return
    ended = true
    if (decode !== undefined) decode.end()
    input.push(null)
  }
  inputSocket.on("data", (chunk) => feedInput(chunk))
  inputSocket.on("end", () => endInput())
  inputSocket.unref()
  return input
}

// ---- STH's DataStream --------------------------------------------------------------------

/**
 * The methods of scramjet's DataStream / StringStream / BufferStream that a Readable does not
 * have (or has with other semantics: map, filter, flatMap, reduce, toArray). Using one on the
 * input (or on what a pipeline stage passes on) makes it a scramjet stream, as STH hands it;
 * scramjet is loaded then, not before, so a sequence that does not use it starts as fast.
 */
const dataStreamMethods = new Set([
  "CSVParse", "CSVStringify", "JSONParse", "JSONStringify", "accumulate", "all", "append", "assign", "batch", "breakup",
  "bufferify", "concat", "consume", "copy", "debug", "delegate", "distribute", "do", "dropTransform", "each", "empty",
  "endWith", "exec", "filter", "flatMap", "flatten", "graph", "group", "into", "join", "keep", "lines", "map", "match",
  "nagle", "parse", "peek", "pop", "prepend", "pull", "pushTransform", "race", "raise", "rate", "reduce", "reduceNow",
  "remap", "rewind", "run", "separate", "separateInto", "setOptions", "shift", "slice", "split", "stack", "stringify",
  "tap", "tee", "timeBatch", "toArray", "toBufferStream", "toDataStream", "toGenerator", "toJSONArray", "toJSONObject",
  "toStringStream", "unorder", "until", "use", "whenDrained", "whenEnd", "whenError", "whenFinished", "whenRead",
  "whenWrote", "while", "window"
])
/** Methods only a StringStream has: an input of unknown type used with one is text. */
const stringStreamMethods = new Set(["split", "lines", "match", "JSONParse", "CSVParse", "parse", "append", "prepend"])

let scramjet
/** The sequence's own scramjet if it brings one, else shardhub's. */
const loadScramjet = () => (scramjet ??= require(require.resolve("scramjet", { paths: [dir, __dirname] })))

/** `value` as the scramjet stream STH would hand on: by the input's content type, or by use. */
const toScramjet = (value, method) => {
  const { DataStream, StringStream, BufferStream } = loadScramjet()
  if (value instanceof DataStream) return value
  const type = value.contentType
  if (type === undefined ? stringStreamMethods.has(method) : /^text\//.test(type)) return StringStream.from(value)
  if (type !== undefined && !/x-ndjson/.test(type) && value.readableObjectMode) return BufferStream.from(value)
  return DataStream.from(value)
}

/**
 * `value` (the input, or a stage's result) as itself, until a DataStream method is used on it:
 * from then on, as a scramjet stream.
 */
const dataStreamOnUse = (value) => {
  if (value === null || typeof value !== "object") return value
  let converted
  return new Proxy(value, {
    get(target, prop) {
      const useScramjet = converted !== undefined || (typeof prop === "string" && dataStreamMethods.has(prop))
      const source = useScramjet ? (converted ??= toScramjet(target, prop)) : target
      const found = Reflect.get(source, prop, source)
      return typeof found === "function" ? found.bind(source) : found
    }
  })
}

// ---- output -----------------------------------------------------------------------------

const encode = (chunk) =>
  typeof chunk === "string" || chunk instanceof Uint8Array ? chunk : JSON.stringify(chunk) + "\n"

/** Where output is written now: fd 5, or an `inout` connection taken (`takeConnection`). */
let output = outputSocket
/** The byte stream being piped to `output`, if the sequence returned one. */
let piped

/** Output goes to `target` from now on (what was written before stays where it went). */
const outputTo = (target) => {
  if (target === output) return
  if (piped !== undefined) piped.unpipe(output)
  output = target
  if (piped !== undefined) piped.pipe(target, { end: false })
}

/** Writes what the sequence returned to the output, then leaves as completed. */
const ship = async (result) => {
  if (result === undefined || result === null) return
  if (typeof result.then === "function") return ship(await result)
  const iterable = typeof result[Symbol.asyncIterator] === "function" || typeof result[Symbol.iterator] === "function"
  if (typeof result === "string" || result instanceof Uint8Array || !iterable || Array.isArray(result)) {
    output.write(encode(result))
    return leave(EXIT.done)
  }
  if (typeof result.pipe === "function" && !result.readableObjectMode && typeof result.read === "function") {
    // A byte stream: let Node pipe it.
    result.on("error", (error) => fatal(EXIT.failed, error))
    piped = result
    result.pipe(output, { end: false })
    result.on("end", () => leave(EXIT.done))
    return
  }
  for await (const chunk of result) {
    if (leaving) return
    const target = output
    if (!target.write(encode(chunk))) {
      await new Promise((resolve) => {
        target.once("drain", resolve)
        target.once("close", resolve)
      })
    }
  }
  leave(EXIT.done)
}

// ---- connections taken past the runner (fd 6) -------------------------------------------

/** Tickets the runner announced (`connection`), each usable once for 30 s. */
const tickets = new Map()
/** Connections that presented a ticket before its announcement was read here. */
const early = new Map()
/** Reports of the connections taken that are still open (each sends its byte counts once). */
const taken = new Set()
/** Connections that have not presented a valid ticket yet (at most `MAX_UNCLAIMED`). */
let unclaimed = 0
const MAX_UNCLAIMED = 64
const TICKET = /^[0-9a-f]{32}$/

/**
 * The runner will send a client with `message.ticket`. Its `head` (the input header, which the
 * runner counts as written) is taken now: the input has it even if the client never comes and
 * input arrives through the runner after all.
 */
const expect = (message) => {
  if (typeof message.ticket !== "string" || !TICKET.test(message.ticket) || (message.kind !== "input" && message.kind !== "inout")) return
  const head = Buffer.from(typeof message.head === "string" ? message.head : "", "base64")
  if (head.length > 0) feedInput(head)
  const waiting = early.get(message.ticket)
  if (waiting !== undefined) {
    early.delete(message.ticket)
    return waiting(message)
  }
  const timer = setTimeout(() => tickets.delete(message.ticket), 30_000)
  timer.unref()
  tickets.set(message.ticket, { message, timer })
}

/**
 * A client dialled fd 6: it has 10 s to present an announced ticket (a line of 32 hex digits),
 * and gets `OK` and its session, or `ERR` and a closed connection.
 */
const accept = (socket) => {
  socket.on("error", () => {})
  if (leaving || unclaimed >= MAX_UNCLAIMED) return socket.destroy()
  unclaimed++
  let settled = false
  let line = Buffer.alloc(0)
  let ticket
  const settle = (message) => {
    if (settled) return
    settled = true
    unclaimed--
    clearTimeout(deadline)
    socket.off("data", onData)
    if (ticket !== undefined) early.delete(ticket)
    if (message === undefined || leaving) return socket.end("ERR unknown or expired ticket\n")
    socket.write("OK\n")
    takeConnection(message, socket)
  }
  const deadline = setTimeout(() => settle(undefined), 10_000)
  deadline.unref()
  const onData = (chunk) => {
    line = Buffer.concat([line, chunk])
    const newline = line.indexOf(10)
    if (newline < 0) return line.length > 64 ? settle(undefined) : undefined
    socket.off("data", onData)
    socket.pause()
    const rest = line.subarray(newline + 1)
    if (rest.length > 0) socket.unshift(rest)
    ticket = line.subarray(0, newline).toString("latin1")
    const known = TICKET.test(ticket) ? tickets.get(ticket) : undefined
    if (known !== undefined) {
      tickets.delete(ticket)
      clearTimeout(known.timer)
      return settle(known.message)
    }
    if (!TICKET.test(ticket) || early.has(ticket)) return settle(undefined)
    // Its announcement (written before the client learnt the ticket) may be read after it in
    // this turn of the loop: it waits for it, briefly.
    early.set(ticket, settle)
    setTimeout(() => settle(undefined), 2_000).unref()
  }
  socket.on("data", onData)
  socket.on("close", () => settle(undefined))
}

/**
 * A client's connection, with the ticket's `message`: input is read from it; when it ends, the input ends too (`end`) or goes on from fd 4, and an `input`
 * connection is answered `DONE`. An `inout` connection also gets the output while it is open
 * (then fd 5 again). When it closes, the bytes it carried are reported for the runner's metrics.
 */
const takeConnection = (message, socket) => {
  let read = 0
  // Output only: not the `OK` written before, nor an input's `DONE`.
  const before = socket.bytesWritten
  const report = () => {
    if (!taken.delete(report)) return
    send({ $shardhub: "bytes", in: read, out: message.kind === "inout" ? socket.bytesWritten - before : 0 })
  }
  taken.add(report)
  inputSource.pause()
  inputSource = socket
  socket.on("data", (chunk) => {
    read += chunk.length
    feedInput(chunk)
  })
  socket.once("end", () => {
    if (message.end !== false) {
      endInput()
      // Later input through the runner is refused (the pipe is closed), as after a relayed end.
      inputSocket.destroy()
    } else {
      inputSource = inputSocket
      inputSocket.resume()
    }
    if (message.kind === "input") socket.end("DONE\n")
  })
  socket.once("close", () => {
    if (inputSource === socket) {
      inputSource = inputSocket
      inputSocket.resume()
    }
    if (output === socket) outputTo(outputSocket)
    report()
  })
  if (message.kind === "inout") outputTo(socket)
  socket.resume()
}

try {
  if (require("node:fs").fstatSync(6).isSocket()) {
    const listener = Net.createServer({ allowHalfOpen: true, noDelay: true }, accept)
    listener.on("error", () => {})
    listener.listen({ fd: 6 })
    listener.unref()
  }
} catch {}

// ---- start ------------------------------------------------------------------------------

const load = () => {
  const file = Path.resolve(dir, main)
  try {
    return require(file)
  } catch (error) {
    if (error && error.code === "MODULE_NOT_FOUND" && String(error.message).includes(file)) {
      process.stderr.write(`Sequence entrypoint path ${main} is invalid. Check \`main\` field in package.json\n`)
      leave(EXIT.badMain)
      return undefined
    }
    if (error && error.code === "ERR_REQUIRE_ESM") return import(require("node:url").pathToFileURL(file).href)
    throw error
  }
}

const start = async () => {
  // Made before the sequence loads: a connection taken meanwhile feeds it.
  const input = makeInput()
  let exported
  try {
    exported = await load()
  } catch (error) {
    return fatal(EXIT.startFailed, error)
  }
  if (leaving) return
  if (exported && typeof exported === "object" && "default" in exported && !Array.isArray(exported)) exported = exported.default
  const declared = Array.isArray(exported) ? exported : [exported]
  // STH: a first element `{ requires: "topic", contentType }` feeds the input from a topic.
  const requires = declared[0] && typeof declared[0] === "object" && typeof declared[0].requires === "string" ? declared[0] : undefined
  if (requires) send({ $shardhub: "topics", requires: requires.requires, contentType: requires.contentType })
  const stages = declared.filter((stage) => typeof stage === "function")
  if (stages.length === 0) {
    process.stderr.write(`Sequence ${main} exports no function\n`)
    return leave(EXIT.startFailed)
  }
  let stream = dataStreamOnUse(input)
  healthTimer = setInterval(checkHealth, 1000)
  healthTimer.unref()
  send({ $shardhub: "ready" })
  try {
    // STH: each stage gets what the one before returned as a DataStream.
    for (const [i, stage] of stages.entries()) stream = await stage.call(context, i === 0 ? stream : dataStreamOnUse(stream), ...args)
  } catch (error) {
    return fatal(EXIT.failed, error)
  }
  // STH: a returned stream with `.topic` (and `.contentType`) is published to that topic.
  if (stream && typeof stream.topic === "string") send({ $shardhub: "topics", provides: stream.topic, contentType: stream.contentType })
  try {
    await ship(stream)
  } catch (error) {
    fatal(EXIT.failed, error)
  }
}

/** Runs the sequence of argv and the environment. */
const begin = () => {
  configure()
  context.instanceId = instanceId
  context.config = appConfig
  start()
}

/**
 * A spare becomes the process of a sequence: argv after this script, the whole environment and
 * the working directory as they would have been given to a new process.
 */
let became = false
function become(message) {
  if (!spare || became) return
  became = true
  const env = message.env !== null && typeof message.env === "object" ? message.env : {}
  for (const key of Object.keys(process.env)) if (!Object.hasOwn(env, key)) delete process.env[key]
  for (const [key, value] of Object.entries(env)) process.env[key] = String(value)
  process.argv.splice(2, Infinity, ...(Array.isArray(message.args) ? message.args.map(String) : []))
  // What ps shows: no longer a spare (cut to the length of the spare's own command line).
  process.title = [process.argv0, ...process.argv.slice(1)].join(" ")
  try {
    process.chdir(String(message.cwd))
  } catch (error) {
    return fatal(EXIT.startFailed, error)
  }
  begin()
}

// The channel keeps the process alive until it leaves.
if (!spare) begin()
