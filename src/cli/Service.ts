/**
 * `shardhub service install`: a systemd unit that runs `shardhub up` (or one runner) at boot, as
 * `pm2 startup` does for PM2. Printed, or written with `--write`.
 *
 * The unit runs this checkout's `main.ts` with the Node that runs this command, as the current
 * user, in the current `SHARDHUB_HOME`. The settings that find and secure the cluster
 * (`DATABASE_URL`, `PG*`, `SHARDHUB_*`) are never put in the unit, which anyone may read: they go
 * to an environment file of mode 0600 beside it. systemd stops the unit by SIGTERM to the main
 * process only (`KillMode=mixed`): the runners hand their instances over as on Ctrl-C, and
 * whatever is left when the main process is gone gets SIGKILL.
 *
 * @since 0.6.0
 */
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { storeConfig } from "../base/Config.ts"
import { runnerNodeOptions } from "../base/heap.js"
import { CliFailure, print } from "./Support.ts"

const main = fileURLToPath(new URL("./main.ts", import.meta.url))

/** The variables that configure a participant: they go to the unit's environment file. */
const settings = (env: NodeJS.ProcessEnv, home: string): Record<string, string> => ({
  ...Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] =>
      entry[1] !== undefined && (entry[0] === "DATABASE_URL" || entry[0].startsWith("SHARDHUB_") || /^PG[A-Z]+$/.test(entry[0]))
    )
  ),
  SHARDHUB_HOME: home
})

/** A value as systemd's environment files and `Environment=` read it: quoted, `\` and `"` escaped. */
const quote = (value: string) => `"${value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")}"`

/** A value as a unit file setting takes it literally: systemd expands `%` specifiers in most settings. */
const literal = (value: string) => value.replaceAll("%", "%%")

/** A word of `ExecStart=` as given: no specifiers, no `$VAR` expansion, quoted when it must be. */
const execWord = (word: string) => {
  const escaped = literal(word).replaceAll("$", "$$$$")
  return /[\s"\\']/.test(escaped) ? quote(escaped) : escaped
}

/**
 * The unit's text.
 *
 * @since 0.6.0
 */
export const unit = (options: {
  readonly name: string
  readonly command: ReadonlyArray<string>
  readonly environmentFile: string
  readonly user: string | undefined
  readonly workingDirectory: string
  readonly path: string
}) =>
  [
    "[Unit]",
    `Description=${literal(`shardhub (${options.command.slice(2).join(" ")})`)}`,
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    ...(options.user === undefined ? [] : [`User=${literal(options.user)}`]),
    `WorkingDirectory=${literal(options.workingDirectory)}`,
    `Environment=${quote(literal(`PATH=${options.path}`))}`,
    `EnvironmentFile=${literal(options.environmentFile)}`,
    `ExecStart=${options.command.map(execWord).join(" ")}`,
    "KillMode=mixed",
    "KillSignal=SIGTERM",
    "TimeoutStopSec=90",
    "Restart=on-failure",
    "RestartSec=2",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    ""
  ].join("\n")

const install = Command.make("install", {
  runner: Flag.Boolean("runner").pipe(Flag.withDescription("Run one runner (shardhub runner) instead of a local cluster (shardhub up)"), Flag.withDefault(false)),
  name: Flag.String("name").pipe(Flag.withDescription("The unit's name (default shardhub, or shardhub-runner)"), Flag.optional),
  write: Flag.Boolean("write").pipe(Flag.withDescription("Write the unit and its environment file instead of printing the unit"), Flag.withDefault(false)),
  unitDir: Flag.String("unit-dir").pipe(Flag.withDescription("Where --write puts both files (default /etc/systemd/system and /etc/shardhub)"), Flag.optional)
}, (flags) =>
  Effect.gen(function*() {
    const name = Option.getOrElse(flags.name, () => flags.runner ? "shardhub-runner" : "shardhub")
    if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,100}$/.test(name)) return yield* new CliFailure({ message: `--name ${JSON.stringify(name)}: use letters, digits, '-', '_', '.' or '@'` })
    const { home } = yield* storeConfig
    const unitDir = Option.getOrElse(flags.unitDir, () => "/etc/systemd/system")
    const environmentFile = Path.join(Option.getOrElse(flags.unitDir, () => "/etc/shardhub"), `${name}.env`)
    const user = Os.userInfo().username
    const text = unit({
      name,
      command: [process.execPath, ...runnerNodeOptions, main, flags.runner ? "runner" : "up"],
      environmentFile,
      user: user === "root" ? undefined : user,
      workingDirectory: Path.dirname(Path.dirname(Path.dirname(main))),
      path: [Path.dirname(process.execPath), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].join(":")
    })
    const environment = settings(process.env, home)
    if (!flags.write) {
      yield* print(text.trimEnd())
      return yield* Console.error(
        `shardhub: printed only; --write writes it to ${Path.join(unitDir, `${name}.service`)} with ${environmentFile} (mode 0600: ${Object.keys(environment).sort().join(", ")})`
      )
    }
    const unitFile = Path.join(unitDir, `${name}.service`)
    yield* Effect.try({
      try: () => {
        Fs.mkdirSync(Path.dirname(environmentFile), { recursive: true, mode: 0o700 })
        // Written anew at mode 0600, never widened from an older file's mode.
        Fs.rmSync(environmentFile, { force: true })
        Fs.writeFileSync(environmentFile, Object.entries(environment).map(([key, value]) => `${key}=${quote(value)}\n`).join(""), { mode: 0o600, flag: "wx" })
        Fs.writeFileSync(unitFile, text, { mode: 0o644 })
      },
      catch: (error) => new CliFailure({ message: `could not write the unit: ${(error as Error).message}` })
    })
    yield* print(unitFile)
    yield* print(environmentFile)
    yield* Console.error(`shardhub: now run: systemctl daemon-reload && systemctl enable --now ${name}`)
  })).pipe(Command.withDescription("Print (or --write) a systemd unit that runs shardhub at boot, like pm2 startup"))

/** @since 0.6.0 */
export const serviceCommands = [
  Command.make("service").pipe(
    Command.withDescription("Run shardhub as a system service"),
    Command.withSubcommands([install])
  )
]
