/**
 * What the API really sends, and how PostgreSQL runs it: for a short capture phase the
 * benchmark database gets auto_explain (ANALYZE, BUFFERS, nested statements: the bodies
 * of SQL functions and triggers too) and log_statement = all, as database settings that
 * only new connections pick up. A freshly started API then makes one request per route
 * (after an identical warm-up request), and the server log between two markers is that
 * request's statements and plans. Nothing is copied from the source, so the report
 * follows the SQL when it changes.
 */
import type pg from 'pg'
import { AUTHENTICATE } from '../../src/database/accounts.js'
import { sleep } from './processes.js'

const SETTINGS: Array<[string, string]> = [
  ['session_preload_libraries', 'auto_explain'],
  ['auto_explain.log_min_duration', '0'],
  ['auto_explain.log_analyze', 'on'],
  ['auto_explain.log_buffers', 'on'],
  ['auto_explain.log_timing', 'on'],
  ['auto_explain.log_nested_statements', 'on'],
  ['log_statement', 'all']
]

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`

/** The server's log, kept only while capturing (wire startEmbeddedPostgres's onLog to `append`). */
export class ServerLog {
  private text = ''
  private capturing = false
  append (chunk: string): void {
    if (this.capturing) this.text += chunk
  }

  start (): void {
    this.text = ''
    this.capturing = true
  }

  stop (): string {
    this.capturing = false
    const text = this.text
    this.text = ''
    return text
  }

  includes (needle: string): boolean {
    return this.text.includes(needle)
  }
}

export async function enableCapture (admin: pg.ClientBase, database: string): Promise<void> {
  for (const [name, value] of SETTINGS) await admin.query(`ALTER DATABASE ${ident(database)} SET ${name} = '${value}'`)
}

export async function disableCapture (admin: pg.ClientBase, database: string): Promise<void> {
  await admin.query(`ALTER DATABASE ${ident(database)} RESET ALL`)
}

const MARK = 'invsys-bench-capture'

async function mark (admin: pg.ClientBase, what: string): Promise<void> {
  await admin.query(`DO $$ BEGIN RAISE LOG '${MARK} ${what}'; END $$`)
}

export interface Plan {
  /** Executions of this statement within the request (functions run once per row). */
  count: number
  totalMs: number
  queryText: string
  /** The first execution's parameters, as auto_explain wrote them. */
  parameters: string
  /** The first execution's plan, as auto_explain wrote it. */
  plan: string
}

export interface Captured {
  label: string
  status: number
  /** What the API sent, in order: one round trip each. */
  statements: string[]
  plans: Plan[]
}

export interface CaptureRequest {
  label: string
  run: () => Promise<number>
}

/** Runs each request twice (warm-up, then captured) and returns what the server logged for the second. */
export async function capture (admin: pg.ClientBase, log: ServerLog, requests: CaptureRequest[]): Promise<Captured[]> {
  const statuses: number[] = []
  let text = ''
  log.start()
  try {
    for (const [index, request] of requests.entries()) {
      await request.run()
      await mark(admin, `begin ${index}`)
      statuses.push(await request.run())
      await mark(admin, `end ${index}`)
    }
    await mark(admin, 'done')
    // The log reaches us through a pipe, a little after the statements return.
    for (let waited = 0; waited < 5000 && !log.includes(`${MARK} done`); waited += 50) await sleep(50)
  } finally {
    text = log.stop()
  }
  return requests.map((request, index) => {
    const from = text.indexOf(`${MARK} begin ${index}`)
    const to = text.indexOf(`${MARK} end ${index}`)
    const segment = from === -1 || to === -1 ? '' : text.slice(text.indexOf('\n', from) + 1, text.lastIndexOf('\n', to))
    return { label: request.label, status: statuses[index]!, ...parse(segment) }
  })
}

const PREFIX = /^\d{4}-\d\d-\d\d \S+ \S+ \[\d+\] ([A-Z]+):\s+(.*)$/

const squash = (sql: string) => sql.replace(/\s+/g, ' ').trim()

/** Token hashes in logged parameters: the report has no use for them. */
const redact = (text: string) => text.replace(/'\\x[0-9a-f]{64}'/g, '\'\\x… (token hash)\'')

function parse (segment: string): { statements: string[], plans: Plan[] } {
  const entries: Array<{ level: string, lines: string[] }> = []
  for (const line of segment.split('\n')) {
    const start = PREFIX.exec(line)
    if (start) entries.push({ level: start[1]!, lines: [start[2]!] })
    else if (line.startsWith('\t') && entries.length > 0) entries.at(-1)!.lines.push(line.slice(1))
  }
  const statements: string[] = []
  const plans = new Map<string, Plan>()
  for (const { level, lines } of entries) {
    const first = lines[0]!
    if (level === 'LOG' && /^(statement|execute [^:]*): /.test(first)) {
      statements.push(squash(lines.join(' ').replace(/^(statement|execute [^:]*): /, '')))
    } else if (level === 'DETAIL' && first.startsWith('parameters:') && statements.length > 0) {
      statements[statements.length - 1] += `  -- ${redact(first)}`
    } else if (level === 'LOG' && first.startsWith('duration:')) {
      const ms = Number(/duration: ([\d.]+) ms/.exec(first)?.[1] ?? NaN)
      const textStart = lines.findIndex((l) => l.startsWith('Query Text:'))
      // The query text runs until the plan's top node, the first line that starts unindented
      // and carries "  (cost=".
      let planStart = textStart + 1
      while (planStart < lines.length && !/^\S.*? {2}\(cost=\d/.test(lines[planStart]!)) planStart++
      // Since PostgreSQL 16 the parameters follow the text, on a line of their own.
      const head = lines.slice(textStart, planStart)
      const paramsAt = head.findIndex((l) => l.startsWith('Query Parameters:'))
      const queryText = squash((paramsAt === -1 ? head : head.slice(0, paramsAt)).join(' ').replace(/^Query Text:\s*/, ''))
      const parameters = paramsAt === -1 ? '' : redact(squash(head.slice(paramsAt).join(' ').replace(/^Query Parameters:\s*/, '')))
      const plan = redact(lines.slice(planStart).join('\n'))
      const known = plans.get(queryText)
      if (known) {
        known.count++
        known.totalMs += ms
      } else {
        plans.set(queryText, { count: 1, totalMs: ms, queryText, parameters, plan })
      }
    }
  }
  return { statements, plans: [...plans.values()] }
}

/** Whether a plan is the token lookup every /api request makes first. */
export function isTokenLookup (plan: Plan): boolean {
  return plan.queryText === squash(AUTHENTICATE)
}
