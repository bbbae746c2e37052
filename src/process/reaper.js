// The reaper: a tiny helper process (plain JavaScript, no dependencies) that makes sure a
// ProcessManager's children never outlive it, even when it is SIGKILLed.
//
//   node reaper.js <token>
//
// 1. On start it kills every process that carries SHARDHUB_SUPERVISOR=<token> in its
//    environment — leftovers of a previous incarnation of the same manager — waits until they
//    are gone, and prints "ready <count>".
// 2. It then reads "+<pgid>" / "-<pgid>" lines on stdin: the process groups the manager owns.
// 3. When stdin ends (the manager exited or died; the kernel closes the pipe either way) it
//    SIGKILLs every group it was told about and sweeps for the token again, then exits.
// 4. The fence: "f<ms>" lines arm (and re-arm) a deadline <ms> from now. When it passes without
//    a new "f", the manager could not prove in time that it still holds its shards (it is frozen,
//    cut off from the store, or the store is gone), so another runner may soon start the same
//    programs: every group is stopped (SIGSTOP), groups added later too, and "frozen" is printed.
//    Stopped programs run no code; the manager continues (SIGCONT) those whose shards it still
//    holds once it can prove it again, and stops the others for good.
//
// It runs in its own session, so a Ctrl-C in the manager's terminal does not reach it.
import * as fs from "node:fs"

const token = process.argv[2]
if (!token) {
  process.stderr.write("usage: reaper.js <token>\n")
  process.exit(2)
}
const needle = Buffer.from(`SHARDHUB_SUPERVISOR=${token}\0`)
const groups = new Set()

const tagged = () => {
  const found = []
  for (const entry of fs.readdirSync("/proc")) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || pid === process.pid) continue
    let environ
    try {
      environ = fs.readFileSync(`/proc/${pid}/environ`)
    } catch {
      continue
    }
    const at = environ.indexOf(needle)
    if (at === 0 || (at > 0 && environ[at - 1] === 0)) found.push(pid)
  }
  return found
}

const signal = (target) => {
  try {
    process.kill(target, "SIGKILL")
  } catch {
    // gone already, or not ours
  }
}

const alive = (pid) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return false
  }
}

const sweep = async () => {
  let pids = tagged()
  const count = pids.length
  const deadline = Date.now() + 5000
  while (pids.length > 0 && Date.now() < deadline) {
    for (const pid of pids) signal(pid)
    await new Promise((resolve) => setTimeout(resolve, 10))
    pids = pids.filter(alive).concat(tagged().filter((pid) => !pids.includes(pid)))
  }
  return count
}

let fence
let frozen = false
const stop = (pgid) => {
  try {
    process.kill(-pgid, "SIGSTOP")
  } catch {
    // gone already
  }
}
const freeze = () => {
  frozen = true
  for (const pgid of groups) stop(pgid)
  process.stdout.write("frozen\n")
}

const finish = async () => {
  for (const pgid of groups) signal(-pgid)
  await sweep()
  process.exit(0)
}

process.on("SIGINT", () => {})
process.on("SIGHUP", () => {})
process.on("SIGTERM", () => void finish())

let carry = ""
process.stdin.setEncoding("utf8")
process.stdin.on("data", (chunk) => {
  const lines = (carry + chunk).split("\n")
  carry = lines.pop()
  for (const line of lines) {
    if (line[0] === "f") {
      const ms = Number(line.slice(1))
      if (!Number.isFinite(ms)) continue
      clearTimeout(fence)
      frozen = false
      fence = setTimeout(freeze, Math.max(0, ms))
      continue
    }
    const pgid = Number(line.slice(1))
    if (!Number.isInteger(pgid) || pgid <= 1) continue
    if (line[0] === "+") {
      groups.add(pgid)
      if (frozen) stop(pgid)
    } else groups.delete(pgid)
  }
})
process.stdin.on("end", () => void finish())
process.stdin.on("error", () => void finish())

sweep().then((count) => process.stdout.write(`ready ${count}\n`))
