/**
 * Labels: what a runner carries (`shardhub runner --label gpu=true`, `SHARDHUB_RUNNER_LABELS`)
 * and what an instance may require of its runner (see `instance/Placement`).
 *
 * @since 0.10.0
 */
import { Schema } from "effect"

const keyPattern = /^[a-z0-9][a-z0-9._-]{0,62}$/
const valuePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/

/** Whether `key` may be a label's key. */
export const isLabelKey = (key: string): boolean => keyPattern.test(key)

/** Labels a runner may carry at most (it serves up to 2^4 - 1 placement groups). */
export const maxLabels = 4

/**
 * Labels: up to four `key=value` pairs; keys lower-case letters, digits, `.`, `_` and `-`
 * (1–63), values letters, digits, `.`, `_` and `-` (1–63).
 *
 * @since 0.10.0
 */
export const Labels = Schema.Record(Schema.String, Schema.String.check(Schema.isPattern(valuePattern))).check(
  Schema.isMaxProperties(maxLabels),
  // Checked as a whole: a key check inside the record would drop a bad key instead of refusing it.
  Schema.makeFilter((labels: Readonly<Record<string, string>>) => {
    const bad = Object.keys(labels).find((key) => !keyPattern.test(key))
    return bad === undefined ? true : `label key ${JSON.stringify(bad)}: a key is 1–63 lower-case letters, digits, '.', '_' or '-'`
  })
)
/** @since 0.10.0 */
export type Labels = typeof Labels.Type

/**
 * A requirement in one canonical string (`gpu=true,zone=a`, keys sorted); `""` for none.
 *
 * @since 0.10.0
 */
export const requirementKey = (labels: Labels | undefined): string =>
  labels === undefined ? "" : Object.keys(labels).sort().map((key) => `${key}=${labels[key]}`).join(",")

/**
 * The labels of a canonical requirement string.
 *
 * @since 0.10.0
 */
export const labelsOf = (key: string): Labels =>
  key === "" ? {} : Object.fromEntries(key.split(",").map((pair) => pair.split("=") as [string, string]))

/**
 * Parses `key=value` words (repeated flags, or one comma-separated list): the labels, or why not.
 *
 * @since 0.10.0
 */
export const parseLabels = (words: ReadonlyArray<string>): Labels | string => {
  const labels: Record<string, string> = {}
  for (const word of words.flatMap((w) => w.split(",")).map((w) => w.trim()).filter((w) => w !== "")) {
    const at = word.indexOf("=")
    const key = at < 0 ? word : word.slice(0, at)
    const value = at < 0 ? "" : word.slice(at + 1)
    if (!keyPattern.test(key)) return `label ${JSON.stringify(word)}: a key is 1–63 lower-case letters, digits, '.', '_' or '-'`
    if (!valuePattern.test(value)) return `label ${JSON.stringify(word)}: give key=value, the value 1–63 letters, digits, '.', '_' or '-'`
    if (key in labels && labels[key] !== value) return `label ${key} is given twice`
    labels[key] = value
  }
  if (Object.keys(labels).length > maxLabels) return `at most ${maxLabels} labels`
  return labels
}

/**
 * Whether `labels` meet `requirement` (every pair of it is among them).
 *
 * @since 0.10.0
 */
export const meets = (labels: Labels, requirement: Labels): boolean =>
  Object.entries(requirement).every(([key, value]) => labels[key] === value)

/**
 * Every non-empty subset of `labels`, as canonical requirement strings: the requirements a
 * runner with them meets.
 *
 * @since 0.10.0
 */
export const subsets = (labels: Labels): ReadonlyArray<string> => {
  const pairs = Object.keys(labels).sort().map((key) => `${key}=${labels[key]}`)
  const all: Array<string> = []
  for (let mask = 1; mask < 1 << pairs.length; mask++) {
    all.push(pairs.filter((_, i) => (mask & (1 << i)) !== 0).join(","))
  }
  return all
}

