// shardhub's dashboard: plain browser JavaScript on the gateway's own APIs (/api/shardhub/v1 and
// STH's /api/v1), no dependencies. Every value from the cluster is put in the page as text
// (textContent), never as markup.

const native = "/api/shardhub/v1"
const sth = "/api/v1"
const view = document.getElementById("view")
const statusLine = document.getElementById("status")
let token = sessionStorage.getItem("shardhub-token") ?? ""
let stopCurrent = () => {}

/** An element with attributes and children (strings become text). */
const el = (tag, attributes = {}, ...children) => {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(attributes)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value)
    else if (value !== undefined && value !== null) node.setAttribute(key, String(value))
  }
  for (const child of children.flat()) node.append(child instanceof Node ? child : document.createTextNode(child ?? "-"))
  return node
}

const headers = (json) => ({
  ...(token ? { authorization: `Bearer ${token}` } : {}),
  ...(json ? { "content-type": "application/json" } : {})
})

/** Asks the gateway; asks for the token when it wants one. */
const api = async (path, init = {}) => {
  const response = await fetch(path, { ...init, headers: { ...headers(init.json !== undefined), ...init.headers }, body: init.json !== undefined ? JSON.stringify(init.json) : init.body })
  if (response.status === 401) {
    await login()
    return api(path, init)
  }
  if (!response.ok) {
    const text = await response.text()
    let message = text
    try {
      message = JSON.parse(text).error ?? text
    } catch {}
    throw new Error(`${response.status}: ${message}`)
  }
  return response
}
const json = async (path, init) => (await api(path, init)).json()

const login = () =>
  new Promise((resolve) => {
    const dialog = document.getElementById("login")
    dialog.addEventListener("close", () => {
      token = document.getElementById("token").value
      sessionStorage.setItem("shardhub-token", token)
      resolve()
    }, { once: true })
    dialog.showModal()
  })

const age = (ms) => {
  if (ms === undefined || ms === null) return "-"
  const s = Math.max(0, Math.round(ms / 1000))
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : s < 86400 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`
}
const bytes = (n) => n === undefined ? "-" : n < 1024 * 1024 ? `${(n / 1024).toFixed(0)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`
const program = (spec) => spec.program._tag === "Command" ? [spec.program.command, ...(spec.program.args ?? [])].join(" ") : `sequence ${spec.program.sequenceId}`
const show = (message, error = false) => {
  statusLine.textContent = message
  statusLine.className = error ? "error" : ""
}

/** Re-runs `render` every `ms` until the view changes. */
const every = (ms, render) => {
  let timer
  let stopped = false
  const tick = async () => {
    try {
      await render()
      show(`updated ${new Date().toLocaleTimeString()}`)
    } catch (error) {
      show(String(error.message ?? error), true)
    }
    if (!stopped) timer = setTimeout(tick, ms)
  }
  tick()
  return () => {
    stopped = true
    clearTimeout(timer)
  }
}

// ---- cluster: runners and instances -------------------------------------------------------

const cluster = () => {
  const filter = el("input", { placeholder: "filter by id, name or program", "aria-label": "filter" })
  const status = el("select", { "aria-label": "status" }, ...["live", "all", "running", "stopped", "crashed"].map((s) => el("option", { value: s }, s)))
  const runners = el("tbody")
  const instances = el("tbody", { id: "instances" })
  const form = el("form", { class: "bar", onsubmit: async (event) => {
    event.preventDefault()
    const line = event.target.elements.command.value.trim()
    if (line === "") return
    try {
      await json(`${native}/instances`, { method: "POST", json: { spec: { program: { _tag: "Command", command: "sh", args: ["-c", line] }, name: event.target.elements.name.value || undefined } } })
      event.target.reset()
    } catch (error) {
      show(error.message, true)
    }
  } }, el("input", { name: "command", placeholder: "command to run (sh -c)", size: 40 }), el("input", { name: "name", placeholder: "name" }), el("button", {}, "Run"))
  view.replaceChildren(
    el("section", {}, el("h2", {}, "Runners"), el("table", {}, el("thead", {}, el("tr", {}, ...["address", "healthy", "shards", "instances", "heartbeat", "labels", ""].map((h) => el("th", {}, h)))), runners)),
    el("section", {}, el("h2", {}, "Instances"), form, el("div", { class: "bar" }, filter, status),
      el("table", {}, el("thead", {}, el("tr", {}, ...["id", "name", "status", "runner", "restarts", "uptime", "program"].map((h) => el("th", {}, h)))), instances))
  )
  const render = async () => {
    const [rows, all] = await Promise.all([json(`${native}/runners`), json(`${native}/instances?all=true`)])
    runners.replaceChildren(...rows.map((r) => el("tr", { "data-runner": r.address },
      el("td", { class: "mono" }, r.address),
      el("td", {}, r.drained ? "drained" : String(r.healthy)),
      el("td", {}, String(r.shards)),
      el("td", {}, String(r.instances)),
      el("td", {}, `${age(r.heartbeatAgeMs)} ago`),
      el("td", { class: "mono" }, Object.entries(r.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(", ") || "-"),
      el("td", {}, r.drained
        ? el("button", { onclick: () => undrain(r.address) }, "Undrain")
        : el("button", { onclick: () => drain(r.address) }, "Drain")))))
    const wanted = status.value
    const text = filter.value.toLowerCase()
    const now = Date.now()
    instances.replaceChildren(...all
      .filter((i) => wanted === "all" || (wanted === "live" ? !["stopped", "crashed"].includes(i.status) : i.status === wanted))
      .filter((i) => text === "" || [i.id, i.name ?? "", program(i.spec)].some((s) => s.toLowerCase().includes(text)))
      .map((i) => el("tr", { "data-id": i.id },
        el("td", { class: "mono" }, el("a", { href: `#/instance/${encodeURIComponent(i.id)}` }, i.id)),
        el("td", {}, i.name ?? "-"),
        el("td", { class: i.status }, i.status),
        el("td", { class: "mono" }, i.runner ?? "-"),
        el("td", {}, String(i.restarts)),
        el("td", {}, i.status === "running" && i.startedAt ? age(now - i.startedAt) : "-"),
        el("td", { class: "mono" }, program(i.spec)))))
  }
  filter.addEventListener("input", () => render().catch(() => {}))
  status.addEventListener("change", () => render().catch(() => {}))
  return every(2000, render)
}

// ---- one instance: record, stats over time, live log and events, buttons ----------------

/** Hands each line of an NDJSON response to `onItem` until the response ends. */
const readLines = async (response, onItem) => {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
  let rest = ""
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return
    rest += value
    let newline
    while ((newline = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, newline)
      rest = rest.slice(newline + 1)
      if (line.trim() !== "") onItem(JSON.parse(line))
    }
  }
}

/** Reads an NDJSON stream into `onItem` while `signal` lasts; `onStart` before each (re)read. */
const follow = async (path, signal, onStart, onItem) => {
  while (!signal.aborted) {
    try {
      const response = await api(path, { signal })
      onStart()
      await readLines(response, onItem)
    } catch {
      if (signal.aborted) return
    }
    await new Promise((resolve) => setTimeout(resolve, 2000))
  }
}

const sparkline = (values, max) => {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg")
  svg.setAttribute("class", "spark")
  svg.setAttribute("viewBox", "0 0 60 20")
  svg.setAttribute("preserveAspectRatio", "none")
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline")
  line.setAttribute("fill", "none")
  line.setAttribute("stroke", "#0969da")
  line.setAttribute("stroke-width", "0.6")
  line.setAttribute("points", values.map((v, i) => `${i},${20 - (max > 0 ? (v / max) * 19 : 0)}`).join(" "))
  svg.append(line)
  return svg
}

/** The app an instance is a copy of (its name targets every copy), else the instance itself. */
const appOf = (info) => info.spec.labels?.["shardhub.app"] ?? info.spec.labels?.["shardhub.apply/app"] ?? info.name ?? info.id

/** Reloads `target` copy by copy, showing each step of the rollout as it comes. */
const reload = async (target) => {
  try {
    const response = await api(`${native}/reload`, { method: "POST", json: { target } })
    await readLines(response, (step) => {
      if (step._tag === "Error") show(`reload ${target}: ${step.message}`, true)
      else if (step._tag === undefined) show(step.ok ? `reload ${target}: ${step.replaced.length} replaced` : `reload ${target} stopped${step.reverted ? ", old copies put back" : ""}: ${step.failed.map((f) => f.reason).join("; ")}`, !step.ok)
      else show(`reload ${target}: ${step.name} ${step._tag.toLowerCase()}${step.reason ? `: ${step.reason}` : ""}`, step._tag === "Failed")
    })
  } catch (error) {
    show(error.message, true)
  }
}

/** Drains the runner at `address`, showing how many instances it still runs as they move. */
const drain = async (address) => {
  try {
    const response = await api(`${native}/runners/${encodeURIComponent(address)}/drain`, { method: "POST", json: {} })
    await readLines(response, (step) => {
      if (step._tag === "Error") show(`drain ${address}: ${step.message}`, true)
      else show(step.instances === 0 && step.shards === 0 ? `drained ${address}` : `draining ${address}: ${step.instances} instances and ${step.shards} shards left`)
    })
  } catch (error) {
    show(error.message, true)
  }
}

const undrain = async (address) => {
  try {
    await json(`${native}/runners/${encodeURIComponent(address)}/undrain`, { method: "POST" })
    show(`${address} takes shards again`)
  } catch (error) {
    show(error.message, true)
  }
}

const instance = (id) => {
  const record = el("tbody")
  const stats = el("div", { class: "bar" })
  const log = el("pre", { class: "log", id: "log" })
  const events = el("tbody", { id: "events" })
  const act = (what) => async () => {
    try {
      await json(`${native}/instances/${encodeURIComponent(id)}/${what}`, { method: "POST", json: what === "kill" ? {} : { timeoutMs: 5000 } })
      show(`${what}: done`)
    } catch (error) {
      show(error.message, true)
    }
  }
  view.replaceChildren(
    el("section", {}, el("h2", {}, `Instance ${id}`),
      el("div", { class: "bar" }, el("button", { onclick: act("stop") }, "Stop"), el("button", { onclick: act("restart") }, "Restart"), el("button", { id: "reload", onclick: async () => reload(appOf(await json(`${native}/instances/${encodeURIComponent(id)}`))) }, "Reload app"), el("button", { class: "danger", onclick: act("kill") }, "Kill")),
      el("table", {}, record)),
    el("section", {}, el("h2", {}, "Usage"), stats),
    el("section", {}, el("h2", {}, "Log"), log),
    el("section", {}, el("h2", {}, "Events"), el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "at"), el("th", {}, "name"), el("th", {}, "data"))), events))
  )
  const cpu = []
  const rss = []
  const stopPolling = every(2000, async () => {
    const info = await json(`${native}/instances/${encodeURIComponent(id)}`)
    record.replaceChildren(...[
      ["status", info.status], ["name", info.name], ["program", program(info.spec)], ["pid", info.pid], ["runner", info.runner],
      ["restarts", info.restarts], ["uptime", info.status === "running" && info.startedAt ? age(Date.now() - info.startedAt) : undefined],
      ["exit code", info.exitCode], ["signal", info.signal], ["reason", info.reason]
    ].map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { class: k === "status" ? `mono ${v}` : "mono", "data-field": k }, v === undefined ? "-" : String(v)))))
    if (info.status !== "running") return
    const sample = await json(`${native}/instances/${encodeURIComponent(id)}/stats`).catch(() => undefined)
    if (sample === undefined) return
    cpu.push(sample.cpuPercent)
    rss.push(sample.rssBytes)
    if (cpu.length > 60) cpu.shift(), rss.shift()
    stats.replaceChildren(
      el("span", {}, `CPU ${sample.cpuPercent.toFixed(1)} %`), sparkline(cpu, Math.max(100, ...cpu)),
      el("span", {}, `RSS ${bytes(sample.rssBytes)}`), sparkline(rss, Math.max(...rss)))
  })
  // The log (the last 200 lines, then live) and the events, until the process ends; then again
  // (a restart's next process).
  const reading = new AbortController()
  follow(`${native}/instances/${encodeURIComponent(id)}/logs?tail=200&follow=true`, reading.signal, () => log.replaceChildren(), (entry) => {
    log.append(el("span", { class: entry.stream }, `${new Date(entry.time).toISOString()} ${entry.stream.padEnd(6)} ${entry.text}\n`))
    log.scrollTop = log.scrollHeight
  })
  follow(`${native}/instances/${encodeURIComponent(id)}/events`, reading.signal, () => {}, (event) => {
    events.prepend(el("tr", {}, el("td", {}, new Date().toLocaleTimeString()), el("td", { class: "mono" }, event.name), el("td", { class: "mono" }, JSON.stringify(event.data))))
    while (events.children.length > 100) events.lastChild.remove()
  })
  return () => {
    stopPolling()
    reading.abort()
  }
}

// ---- sequences and topics (STH's API) ------------------------------------------------------

const sequences = () => {
  const rows = el("tbody", { id: "sequences" })
  const upload = el("form", { class: "bar", onsubmit: async (event) => {
    event.preventDefault()
    const file = event.target.elements.package.files[0]
    if (file === undefined) return
    try {
      const sent = await json(`${sth}/sequence`, { method: "POST", body: file, headers: { "content-type": "application/octet-stream" } })
      show(`sent ${sent.id}`)
      event.target.reset()
      await render()
    } catch (error) {
      show(error.message, true)
    }
  } }, el("input", { type: "file", name: "package", accept: ".tar.gz,.tgz,.tar", "aria-label": "package" }), el("button", {}, "Upload"))
  view.replaceChildren(el("section", {}, el("h2", {}, "Sequences"), upload,
    el("table", {}, el("thead", {}, el("tr", {}, ...["id", "name", "version", "instances", "args", ""].map((h) => el("th", {}, h)))), rows)))
  const render = async () => {
    const list = await json(`${sth}/sequences`)
    rows.replaceChildren(...list.map((s) => {
      const args = el("input", { placeholder: "args as JSON, e.g. [1, \"a\"]", "aria-label": `args of ${s.id}` })
      const start = async () => {
        try {
          const parsed = args.value.trim() === "" ? [] : JSON.parse(args.value)
          const started = await json(`${sth}/sequence/${encodeURIComponent(s.id)}/start`, { method: "POST", json: { args: parsed } })
          location.hash = `#/instance/${encodeURIComponent(started.id)}`
        } catch (error) {
          show(error.message, true)
        }
      }
      const remove = async () => {
        try {
          await json(`${sth}/sequence/${encodeURIComponent(s.id)}`, { method: "DELETE", json: {} })
          await render()
        } catch (error) {
          show(error.message, true)
        }
      }
      return el("tr", { "data-id": s.id }, el("td", { class: "mono" }, s.id), el("td", {}, s.config.name ?? "-"), el("td", {}, s.config.version ?? "-"),
        el("td", {}, String(s.instances.length)), el("td", {}, args), el("td", {}, el("button", { onclick: start }, "Start"), el("button", { class: "danger", onclick: remove }, "Delete")))
    }))
  }
  return every(5000, render)
}

const topics = () => {
  const rows = el("tbody")
  view.replaceChildren(el("section", {}, el("h2", {}, "Topics"), el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "topic"), el("th", {}, "content type"))), rows)))
  return every(3000, async () => {
    const list = await json(`${sth}/topics`)
    rows.replaceChildren(...list.map((t) => el("tr", {}, el("td", { class: "mono" }, t.topic), el("td", {}, t.contentType))))
  })
}

// ---- routing --------------------------------------------------------------------------------

const route = () => {
  stopCurrent()
  const hash = decodeURIComponent(location.hash.slice(1))
  if (hash.startsWith("/instance/")) stopCurrent = instance(hash.slice("/instance/".length))
  else if (hash === "/sequences") stopCurrent = sequences()
  else if (hash === "/topics") stopCurrent = topics()
  else stopCurrent = cluster()
}
addEventListener("hashchange", route)
route()
