import { spawn } from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'
import t, { type Test } from 'tap'
import { ConfigError, loadConfig, repoRoot } from '../src/config.js'
import { createToken } from '../src/database/accounts.js'
import { DEVELOPMENT_ADMIN_TOKEN, hashToken, tokenDisplayPrefix } from '../src/tokens.js'
import { buildTestApp, listen, tempDir, untapped } from './helpers.js'

/**
 * The documents run as written. Every ```sh block of README.md and of every page in docs/
 * runs, against a server as `npm start` leaves it: the mock data, and the development token
 * for the first admin. A block that cannot run here (Docker, psql, the benchmarks) says so
 * with a comment line just above its fence that holds "not run by docs.test.ts", so a new
 * page or block is run unless it says why not. Each page runs in one bash session of its
 * own (a later block uses what an earlier one set), on a fresh server, so it cannot lean on
 * what another page set.
 *
 * Each command's output is checked against the comment lines after it (up to a blank
 * line or the next command) that show output: a JSON reply (`# {…}`, `# […]`, which may go
 * on over the next comment lines until its brackets close), a status line
 * (`# HTTP/1.1 409 Conflict`) and the headers shown under it, or a bare line such as
 * `# 201`; other comment lines are prose. In JSON, `…` (or `...`)
 * stands for members or items left out, or for a whole string; values the server makes
 * up (ids, times, tokens) must only be of the same kind. Every curl must answer the
 * status its shown output implies (a JSON body without statusCode: 2xx), and one whose
 * output is not shown must not fail.
 */

const SKIP = 'not run by docs.test.ts'

/** README.md, then every page of docs/ in name order. */
async function documents (): Promise<string[]> {
  const pages = (await fs.readdir(path.join(repoRoot, 'docs'))).filter((name) => name.endsWith('.md')).sort()
  return ['README.md', ...pages.map((name) => `docs/${name}`)]
}

async function read (doc: string): Promise<string> {
  return fs.readFile(path.join(repoRoot, doc), 'utf8')
}

interface Step { doc: string, line: number, command: string, expected: string[] }

/** Output lines, as opposed to prose comments: JSON, a status line, its headers, a bare value. */
function isOutput (text: string, previous: string[]): boolean {
  if (/^[[{]/.test(text) || /^HTTP\/[\d.]+ \d{3}/.test(text) || /^\d+$/.test(text)) return true
  return /^[A-Za-z-]+: /.test(text) && previous.some((line) => line.startsWith('HTTP/'))
}

/** Whether the brackets of shown JSON close (strings aside). */
function balanced (text: string): boolean {
  let depth = 0
  for (const match of text.replace(/"(\\.|[^"\\])*"/g, '""').matchAll(/[[\]{}]/g)) depth += match[0] === '[' || match[0] === '{' ? 1 : -1
  return depth <= 0
}

function stepsOf (doc: string, markdown: string): Step[] {
  const lines = markdown.split('\n')
  const steps: Step[] = []
  let inBlock = false
  let run = false
  let current: Step | undefined
  let afterCommand = false
  for (const [i, line] of lines.entries()) {
    if (!inBlock) {
      const fence = /^```(\S*)/.exec(line)
      if (fence) {
        inBlock = true
        run = fence[1] === 'sh' && !lines[i - 1]?.includes(SKIP)
        afterCommand = false
      }
      continue
    }
    if (line.startsWith('```')) {
      inBlock = false
      continue
    }
    if (!run) continue
    if (current && current.command.endsWith('\\')) {
      current.command = `${current.command}\n${line}`
      continue
    }
    const comment = /^# ?(.*)$/.exec(line)
    if (comment) {
      const text = comment[1]!.trim()
      const last = current?.expected.at(-1)
      // A reply shown over several lines goes on until its brackets close.
      if (afterCommand && current && last !== undefined && /^[[{]/.test(last) && !balanced(last)) current.expected[current.expected.length - 1] = `${last}${text}`
      else if (afterCommand && current && isOutput(text, current.expected)) current.expected.push(text)
      // Prose between a command and its output (or after it) is skipped; a blank line ends it.
      continue
    }
    if (line.trim() === '') {
      afterCommand = false
      continue
    }
    current = { doc, line: i + 1, command: line, expected: [] }
    steps.push(current)
    afterCommand = true
  }
  return steps
}

// ---------------------------------------------------------------------------------------
// JSON as the documents show it: with … for what is left out

type Pattern =
  | { kind: 'object', members: Array<[string, Pattern]>, open: boolean }
  | { kind: 'array', items: Pattern[], open: boolean }
  | { kind: 'value', value: unknown }
  | { kind: 'any' }

const ELLIPSIS = /^(\.\.\.|…)/

function parsePattern (text: string): Pattern {
  let at = 0
  const fail = (what: string): never => { throw new Error(`${what} at ${at} in ${text}`) }
  const space = () => { while (/\s/.test(text[at] ?? '')) at++ }
  const ellipsis = () => {
    space()
    const match = ELLIPSIS.exec(text.slice(at))
    if (match) at += match[0].length
    return match !== null
  }
  const string = (): string => {
    const start = at
    at++
    while (text[at] !== '"') {
      if (at >= text.length) fail('an unterminated string')
      at += text[at] === '\\' ? 2 : 1
    }
    at++
    return JSON.parse(text.slice(start, at)) as string
  }
  const value = (): Pattern => {
    space()
    if (ellipsis()) return { kind: 'any' }
    const c = text[at]
    if (c === '{') {
      at++
      const members: Array<[string, Pattern]> = []
      let open = false
      for (;;) {
        space()
        if (text[at] === '}') { at++; break }
        if (ellipsis()) open = true
        else {
          if (text[at] !== '"') fail('a member name')
          const name = string()
          space()
          if (text[at] !== ':') fail('a colon')
          at++
          members.push([name, value()])
        }
        space()
        if (text[at] === ',') at++
        else if (text[at] !== '}') fail('a comma or }')
      }
      return { kind: 'object', members, open }
    }
    if (c === '[') {
      at++
      const items: Pattern[] = []
      let open = false
      for (;;) {
        space()
        if (text[at] === ']') { at++; break }
        if (ellipsis()) open = true
        else items.push(value())
        space()
        if (text[at] === ',') at++
        else if (text[at] !== ']') fail('a comma or ]')
      }
      return { kind: 'array', items, open }
    }
    if (c === '"') {
      const s = string()
      return ELLIPSIS.test(s) || /(\.\.\.|…)/.test(s) ? { kind: 'any' } : { kind: 'value', value: s }
    }
    const literal = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(text.slice(at))
    if (!literal) fail('a value')
    at += literal![0].length
    return { kind: 'value', value: JSON.parse(literal![0]) }
  }
  const result = value()
  space()
  if (at !== text.length) fail('the end')
  return result
}

/** Members whose value the server chooses: only their kind is compared. */
const MADE_UP = new Set(['id', 'token_id', 'token', 'prefix', 'created_at', 'updated_at', 'cancelled_at', 'expires_at', 'last_used_at', 'revoked_at', 'at', 'resource_id', 'allocation_id'])

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/

function kindOf (value: unknown): string {
  if (typeof value === 'string') {
    if (UUID.test(value)) return 'uuid'
    if (TIME.test(value)) return 'time'
    if (value.startsWith('invsys_')) return 'token'
    return 'string'
  }
  return value === null ? 'null' : typeof value
}

/** Where `actual` differs from what the document shows, or [] when it fits. */
function differences (pattern: Pattern, actual: unknown, at = '', key = ''): string[] {
  switch (pattern.kind) {
    case 'any': return []
    case 'value': {
      if (MADE_UP.has(key) && pattern.value !== null) {
        return kindOf(pattern.value) === kindOf(actual) ? [] : [`${at}: a ${kindOf(pattern.value)} is shown, the reply has ${JSON.stringify(actual)}`]
      }
      return JSON.stringify(pattern.value) === JSON.stringify(actual) ? [] : [`${at}: ${JSON.stringify(pattern.value)} is shown, the reply has ${JSON.stringify(actual)}`]
    }
    case 'array': {
      if (!Array.isArray(actual)) return [`${at}: an array is shown, the reply has ${JSON.stringify(actual)}`]
      const count = pattern.open ? actual.length >= pattern.items.length : actual.length === pattern.items.length
      const found = count ? [] : [`${at}: ${pattern.items.length}${pattern.open ? ' or more' : ''} items are shown, the reply has ${actual.length}`]
      return [...found, ...pattern.items.flatMap((item, i) => i < actual.length ? differences(item, actual[i], `${at}[${i}]`) : [])]
    }
    case 'object': {
      if (typeof actual !== 'object' || actual === null || Array.isArray(actual)) return [`${at}: an object is shown, the reply has ${JSON.stringify(actual)}`]
      const record = actual as Record<string, unknown>
      const shown = pattern.members.map(([name]) => name)
      const extra = pattern.open ? [] : Object.keys(record).filter((name) => !shown.includes(name))
      return [
        ...(extra.length > 0 ? [`${at}: the reply also has ${extra.join(', ')} (show them, or … for them)`] : []),
        ...pattern.members.flatMap(([name, sub]) => name in record
          ? differences(sub, record[name], `${at}.${name}`, name)
          : [`${at}.${name}: shown, but not in the reply`])
      ]
    }
  }
}

// ---------------------------------------------------------------------------------------
// Running the steps

interface Ran { output: string, status: number, statuses: number[] }

const BEGIN = '\u001e begin'
const END = '\u001e end'

async function runSteps (steps: Step[], base: string, dir: string): Promise<Ran[]> {
  const port = new URL(base).port
  const script = [
    'set -o pipefail',
    // Every curl of a step writes its response headers where the test reads its status.
    'curl () { command curl --max-time 20 -D "$__headers" "$@"; }',
    ...steps.flatMap((step, i) => [
      `__headers=${JSON.stringify(path.join(dir, `headers.${i}`))}`,
      `printf '\\n${BEGIN} %d\\n' ${i}`,
      step.command.replace(/localhost:3000/g, `127.0.0.1:${port}`),
      `printf '\\n${END} %d %d\\n' ${i} $?`
    ])
  ].join('\n')
  await fs.writeFile(path.join(dir, 'docs.sh'), script)
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(...untapped('bash', [path.join(dir, 'docs.sh')]), { cwd: dir, env: { PATH: process.env.PATH, HOME: dir, LANG: 'C.UTF-8' } })
    const chunks: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk))
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.on('error', reject)
    child.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks).toString('utf8')) })
  })
  return Promise.all(steps.map(async (_, i) => {
    const begin = output.indexOf(`${BEGIN} ${i}\n`)
    const end = output.indexOf(`${END} ${i} `, begin)
    const ranOutput = begin < 0 || end < 0 ? '' : output.slice(begin + `${BEGIN} ${i}\n`.length, end).replace(/\n$/, '')
    const status = end < 0 ? -1 : Number(/^(\d+)/.exec(output.slice(end + `${END} ${i} `.length))?.[1] ?? -1)
    const headers = await fs.readFile(path.join(dir, `headers.${i}`), 'utf8').catch(() => '')
    const statuses = [...headers.matchAll(/^HTTP\/[\d.]+ (\d{3})/gm)].map((m) => Number(m[1]))
    return { output: ranOutput, status, statuses }
  }))
}

/** What a step's shown output says its status is: undefined when it shows nothing of it. */
function expectedStatus (expected: string[]): number | undefined {
  for (const line of expected) {
    const http = /^HTTP\/[\d.]+ (\d{3})/.exec(line)
    if (http) return Number(http[1])
    if (/^\d{3}$/.test(line)) return Number(line)
    if (line.startsWith('{')) {
      const code = /"statusCode":\s*(\d{3})/.exec(line)
      return code ? Number(code[1]) : 200
    }
  }
  return undefined
}

/** The mismatches between a step's shown output and what it printed. */
function check (step: Step, ran: Ran): string[] {
  const problems: string[] = []
  if (ran.status !== 0) problems.push(`exited with status ${ran.status}`)
  const status = ran.statuses.at(-1)
  const wanted = expectedStatus(step.expected)
  if (status !== undefined) {
    if (wanted === undefined ? status >= 400 : (wanted === 200 ? status >= 300 : status !== wanted)) {
      problems.push(`answered ${status}, ${wanted === undefined ? 'but shows no output (so it must succeed)' : `the document shows ${wanted}`}`)
    }
  }
  const lines = ran.output.split(/\r?\n/)
  const json = lines.filter((line) => /^[[{]/.test(line))
  const shownJson = step.expected.filter((line) => /^[[{]/.test(line))
  for (const [i, shown] of shownJson.entries()) {
    let pattern: Pattern
    try {
      pattern = parsePattern(shown)
    } catch (error) {
      problems.push(`the shown output is not JSON with … : ${(error as Error).message}`)
      continue
    }
    let actual: unknown
    try {
      actual = JSON.parse(json[i] ?? '')
    } catch {
      problems.push(`printed no JSON where the document shows ${shown}`)
      continue
    }
    problems.push(...differences(pattern, actual, 'reply'))
  }
  for (const shown of step.expected.filter((line) => !/^[[{]/.test(line))) {
    if (/^HTTP\//.test(shown)) {
      if (!lines.includes(shown)) problems.push(`no status line ${shown}`)
    } else if (/^[A-Za-z-]+: /.test(shown)) {
      const [name, value] = [shown.slice(0, shown.indexOf(':')).toLowerCase(), shown.slice(shown.indexOf(':') + 1).trim()]
      const header = lines.find((line) => line.toLowerCase().startsWith(`${name}:`))
      const got = header?.slice(header.indexOf(':') + 1).trim()
      const fits = got !== undefined && (/\.\.\.|…/.test(value) ? got.startsWith(value.split(/\.\.\.|…/)[0]!) : got === value)
      if (!fits) problems.push(`header ${shown} is shown, the reply has ${header ?? 'none'}`)
    } else if (!lines.includes(shown)) {
      problems.push(`${shown} is shown, it printed ${JSON.stringify(ran.output.slice(0, 300))}`)
    }
  }
  return problems
}

t.test('parsing what the documents show', async (t) => {
  const steps = stepsOf('x.md', [
    '```sh', 'A=1   # a comment', 'curl -s x \\', '  -d y', '# {"id":1,…}', '# prose, not output', '', '# before', 'curl -i z', '# HTTP/1.1 204 No Content',
    '# location: /x', '```', '<!-- not run by docs.test.ts: needs psql -->', '```sh', 'psql', '```'
  ].join('\n'))
  t.same(steps.map((s) => [s.command, s.expected]), [
    ['A=1   # a comment', []],
    ['curl -s x \\\n  -d y', ['{"id":1,…}']],
    ['curl -i z', ['HTTP/1.1 204 No Content', 'location: /x']]
  ])
  const long = stepsOf('x.md', ['```sh', 'curl y', '# what follows is its reply:', '# {"a":1,', '#  "b":[2,', '#       3]}', '# prose again', '```'].join('\n'))
  t.same(long.map((s) => s.expected), [['{"a":1,"b":[2,3]}']], 'a reply over several lines, after prose')
  t.same(differences(parsePattern('{"id":"…","n":2,…,"l":[{"a":null},…]}'), { id: 'x', n: 2, m: 3, l: [{ a: null }, { a: 1 }] }, 'reply'), [])
  t.same(differences(parsePattern('{"id":5,"name":"a"}'), { id: 6, name: 'b', extra: 1 }, 'reply'),
    ['reply: the reply also has extra (show them, or … for them)', 'reply.name: "a" is shown, the reply has "b"'])
  t.same(differences(parsePattern('{"created_at":"2026-11-22T05:36:56.08192Z"}'), { created_at: '2031-01-01T00:00:00Z' }), [], 'times the server makes up')
  t.same(differences(parsePattern('[{"a":1},…]'), [], 'reply'), ['reply: 1 or more items are shown, the reply has 0'])
})

/** A server as `npm start` leaves it, and the steps of `docs` run against it in one shell. */
async function runDocuments (t: Test, docs: string[]): Promise<void> {
  const app = await buildTestApp(t, { seed: true })
  // As after `npm start`: the first admin also has the published development token.
  await createToken(app.pg.pool, 1, { hash: hashToken(DEVELOPMENT_ADMIN_TOKEN), prefix: tokenDisplayPrefix(DEVELOPMENT_ADMIN_TOKEN), label: 'development' })
  const base = await listen(app)
  const dir = await tempDir('invsys-docs-')
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const steps: Step[] = []
  for (const doc of docs) steps.push(...stepsOf(doc, await read(doc)))
  const ran = await runSteps(steps, base, dir)
  for (const [i, step] of steps.entries()) {
    const problems = check(step, ran[i]!)
    t.same(problems, [], `${step.doc}:${step.line} ${step.command.split('\n')[0]!.slice(0, 100)}`, { output: ran[i]!.output.slice(0, 2000) })
  }
}

t.test('the README and every page of docs/ run as written, each alone on a fresh server, and reply as they show', async (t) => {
  const docs = await documents()
  const steps = (await Promise.all(docs.map(async (doc) => stepsOf(doc, await read(doc))))).flat()
  const shown = steps.filter((s) => s.expected.length > 0).length
  t.ok(steps.length > 60, `${steps.length} commands`)
  t.ok(shown * 2 > steps.length, `most show their output (${shown})`)
  for (const doc of ['README.md', 'docs/booking.md', 'docs/calendar-feeds.md', 'docs/security.md', 'docs/operations.md']) {
    t.ok(steps.some((s) => s.doc === doc), `${doc} has commands that run`)
  }
  // Alone, so that no page leans on what another one set; one server each (a copy of the
  // seeded template costs a fraction of a second), two pages at a time.
  const withCommands = docs.filter((doc) => steps.some((s) => s.doc === doc))
  await Promise.all([0, 1].map(async (lane) => {
    for (const doc of withCommands.filter((_, i) => i % 2 === lane)) await t.test(doc, (t) => runDocuments(t, [doc]))
  }))
})

/**
 * The anchors a markdown page offers, as GitHub makes them from its headings (lowercase,
 * punctuation dropped, each space a hyphen, -1, -2 … for repeats), and any id or name of
 * an HTML element. Headings inside code blocks are not headings.
 */
function anchorsOf (markdown: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  let inBlock = false
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) inBlock = !inBlock
    if (inBlock) continue
    for (const match of line.matchAll(/<a\s[^>]*(?:id|name)="([^"]+)"/g)) anchors.add(match[1]!)
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1]
    if (heading === undefined) continue
    const text = heading.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    const slug = text.toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-')
    const count = seen.get(slug) ?? 0
    seen.set(slug, count + 1)
    anchors.add(count === 0 ? slug : `${slug}-${count}`)
  }
  return anchors
}

t.test('the documents link only to files and headings that exist, and run nothing but Node, npm and curl', async (t) => {
  t.same([...anchorsOf('# A: b `c`\n```sh\n# not a heading\n```\n## A: b `c`\n### Why (and how)?')], ['a-b-c', 'a-b-c-1', 'why-and-how'], 'slugs as GitHub makes them')
  for (const doc of await documents()) {
    const text = await read(doc)
    const links = [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((target) => !/^[a-z]+:/.test(target))
    for (const link of links) {
      const [target, anchor] = link.split('#') as [string, string | undefined]
      const file = target === '' ? path.join(repoRoot, doc) : path.resolve(repoRoot, path.dirname(doc), target)
      t.ok(file.startsWith(`${repoRoot}${path.sep}`), `${doc}: ${link} is inside the repository`)
      const exists = await fs.access(file).then(() => true, () => false)
      t.ok(exists, `${doc}: ${target} exists`)
      if (exists && anchor !== undefined && file.endsWith('.md')) {
        t.ok(anchorsOf(await fs.readFile(file, 'utf8')).has(anchor), `${doc}: ${link} names a heading of ${path.relative(repoRoot, file)}`)
      }
    }
    const commands = stepsOf(doc, text).map((s) => s.command).join('\n')
    t.notMatch(commands, /\b(uuidgen|jq)\b/, `${doc}: no uuidgen or jq in what is run`)
  }
})

t.test('the README links every page of docs/, so each is found from it', async (t) => {
  const readme = await read('README.md')
  const linked = new Set([...readme.matchAll(/\]\((docs\/[^)#\s]+\.md)/g)].map((m) => m[1]!))
  const pages = (await documents()).filter((doc) => doc !== 'README.md')
  t.same(pages.filter((page) => !linked.has(page)), [], 'add a line for each to "Where to go next"')
})

/** Every environment variable loadConfig reads, seen by handing it an environment that records each name asked for. */
function variablesRead (): string[] {
  const read = new Set<string>()
  // Each environment leads loadConfig down other branches, so a name read on one only is seen too.
  const environments: Array<Record<string, string>> = [
    {},
    { DATABASE_URL: 'postgres://invsys:secret@db:5432/invsys' },
    { DATABASE_URL: 'postgres://invsys:secret@db:5432/invsys', NODE_ENV: 'production', BOOTSTRAP_ADMIN_TOKEN: 'invsys_AAAAAAAAAAAAAAAAAAAAAAAAAAAA' }
  ]
  for (const environment of environments) {
    const recording = new Proxy(environment, {
      get: (target, name) => { if (typeof name === 'string') read.add(name); return target[name as string] },
      has: (target, name) => { if (typeof name === 'string') read.add(name); return name in target }
    })
    try {
      loadConfig(recording)
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
    }
  }
  return [...read].sort()
}

t.test("docs/operations.md's configuration table names exactly the environment variables config.ts reads", async (t) => {
  const text = await read('docs/operations.md')
  const section = text.slice(text.indexOf('## Configuration'), text.indexOf('\n## ', text.indexOf('## Configuration') + 1))
  const documented = [...section.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \|/gm)].map((m) => m[1]!).sort()
  const reads = variablesRead()
  t.ok(reads.includes('PORT') && reads.includes('BOOTSTRAP_ADMIN_TOKEN'), 'the reads are seen (sanity)')
  t.same(documented, reads, 'add a row for each new variable (or remove the row of one no longer read)')
})

t.test("docs/testing.md's table has one row for each test file", async (t) => {
  const files = (await fs.readdir(path.join(repoRoot, 'services', 'api', 'test'))).filter((name) => name.endsWith('.test.ts')).sort()
  const rows = [...(await read('docs/testing.md')).matchAll(/^\| `([\w.-]+\.test\.ts)` \|/gm)].map((m) => m[1]!)
  t.same(rows, files, 'one row per file, in name order: say what the new file proves')
})
