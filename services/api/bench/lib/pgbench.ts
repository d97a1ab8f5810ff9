/**
 * The database's own ceiling for a booking: pgbench sending the very statements the API
 * sends, prepared (-M prepared, as a pool reusing plans would at best), from 8 clients,
 * with no HTTP, JSON or Node in the way.
 *
 * Two scripts:
 * - bare: the booking INSERT alone (src/database/allocations.ts INSERT), autocommit: what a
 *   booking request sends when its token lookup is kept (plugins/token-cache.ts);
 * - chain: every statement a booking request sends when it is not: the token lookup
 *   (src/database/accounts.ts AUTHENTICATE), then the INSERT, each autocommit (the INSERT
 *   names the actor for the history itself).
 *
 * The statements are imported, not copied, and their $n parameters become pgbench
 * variables. Three become expressions, because pgbench variables are numbers: the car's
 * uuid is a subquery finding car number n by its name (one probe of the unique (type,
 * name) index, in the same statement) and the two times are to_timestamp(seconds). Every transaction books a distinct slot (a per-client
 * counter interleaved by client id), on a random car, so none conflicts.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { AUTHENTICATE } from '../../src/database/accounts.js'
import { INSERT } from '../../src/database/allocations.js'
import { CARS, carIdSql } from './data.js'
import { startChild } from './processes.js'

/** Replaces $1, $2, ... in `sql` by what `params` says, in one pass (so $1 never eats $10). */
function bind (sql: string, params: string[]): string {
  return sql.replace(/\$(\d+)/g, (match, n: string) => {
    const value = params[Number(n) - 1]
    if (value === undefined) throw new Error(`no pgbench variable for ${match}`)
    return value
  })
}

// The order of INSERT's parameters in createAllocation: resource id, type, starts_at,
// ends_at, kind, description, data, status, hold_seconds, actor, whether member rules bind.
const INSERT_PARAMS = [carIdSql(':car'), ':rtype', 'to_timestamp(:t0)', 'to_timestamp(:t1)', ':kind', ':descr', ':data', ':status', ':hold', ':actor', ':rules']

const VARIABLES = `\\set n :n + 1
\\set slot :n * :nclients + :client_id
\\set car random(1, :ncars)
\\set t0 :tbase + :slot * 7200
\\set t1 :t0 + 7200
`

function scripts (): { bare: string, chain: string } {
  const insert = bind(INSERT.trim(), INSERT_PARAMS)
  return {
    bare: `${VARIABLES}${insert};\n`,
    chain: `${VARIABLES}${bind(AUTHENTICATE.trim(), [':th'])};\n${insert};\n`
  }
}

export interface PgbenchResult {
  script: 'bare' | 'chain'
  clients: number
  durationSeconds: number
  transactions: number
  tps: number
  p50Ms: number
  p99Ms: number
  failed: number
  /** Average latency of each statement (pgbench -r), in script order. */
  statements: Array<{ ms: number, sql: string }>
  loadAverage: [number, number]
}

/** Installs Debian's postgresql-client (pgbench) when it is missing and we are root. */
export function ensurePgbench (): string {
  const found = spawnSync('pgbench', ['--version'], { encoding: 'utf8' })
  if (!found.error && found.status === 0) return found.stdout.trim()
  if (process.getuid?.() !== 0) throw new Error('pgbench is missing: apt-get install -y postgresql-client')
  console.log('pgbench missing: installing Debian postgresql-client')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', '--no-install-recommends', 'postgresql-client']]) {
    const run = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env, timeout: 300_000 })
    if (run.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed`)
  }
  return spawnSync('pgbench', ['--version'], { encoding: 'utf8' }).stdout.trim()
}

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

export interface PgbenchOptions {
  databaseUrl: string
  script: 'bare' | 'chain'
  clients: number
  durationSeconds: number
  workDir: string
  /** First slot: seconds since the epoch; each script gets its own stretch of time. */
  timeBase: number
  adminId: number
  tokenHashHex: string
  /** Another script with the same variables (the prototypes' proposals); `script` names its log. */
  scriptText?: string
}

export async function runPgbench (options: PgbenchOptions): Promise<PgbenchResult> {
  const url = new URL(options.databaseUrl)
  const name = `${options.script}-${options.timeBase}`
  const file = path.join(options.workDir, `${name}.sql`)
  await fs.writeFile(file, options.scriptText ?? scripts()[options.script])
  const logPrefix = path.join(options.workDir, `log-${name}`)
  const defines = {
    n: '0',
    nclients: String(options.clients),
    ncars: String(CARS),
    tbase: String(options.timeBase),
    rtype: 'car',
    kind: 'booking',
    descr: 'bench',
    data: '{}',
    status: 'confirmed',
    hold: '0',
    actor: String(options.adminId),
    // The benchmark books as the admin, whom the member rules do not bind.
    rules: 'false',
    th: `\\x${options.tokenHashHex}`
  }
  const args = [
    '-h', url.hostname, '-p', url.port, '-U', decodeURIComponent(url.username), '-n', '-M', 'prepared',
    '-c', String(options.clients), '-j', '2', '-T', String(options.durationSeconds), '-r',
    '-l', `--log-prefix=${logPrefix}`, '-f', file,
    ...Object.entries(defines).flatMap(([name, value]) => ['-D', `${name}=${value}`]),
    url.pathname.slice(1)
  ]
  const before = os.loadavg()[0]!
  const child = startChild(`pgbench ${options.script}`, 'pgbench', args, {
    cwd: options.workDir,
    env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) }
  })
  const timer = setTimeout(() => { void child.stop(2000) }, (options.durationSeconds + 60) * 1000)
  const code = await child.exited
  clearTimeout(timer)
  await child.stop()
  const out = child.output()
  if (code !== 0) throw new Error(`pgbench (${options.script}) exited with ${code}:\n${out}`)

  const latencies: number[] = []
  let failed = 0
  for (const entry of await fs.readdir(options.workDir)) {
    if (!entry.startsWith(`log-${name}.`)) continue
    for (const line of (await fs.readFile(path.join(options.workDir, entry), 'utf8')).split('\n')) {
      const time = line.split(' ')[2]
      if (time === undefined) continue
      if (/^\d+$/.test(time)) latencies.push(Number(time) / 1000)
      else failed++
    }
  }
  latencies.sort((a, b) => a - b)
  const number = (pattern: RegExp) => Number(pattern.exec(out)?.[1] ?? NaN)
  // -r: "   0.123           0  SELECT ..." per statement, after "statement latencies in milliseconds".
  const statements = out.split(/statement latencies in milliseconds[^\n]*\n/)[1]?.split('\n')
    .map((line) => /^\s+([\d.]+)\s+\d+\s+(.*)$/.exec(line) ?? /^\s+([\d.]+)\s+(.*)$/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null && !match[2]!.startsWith('\\set'))
    .map((match) => ({ ms: Number(match[1]), sql: match[2]!.trim() })) ?? []
  return {
    script: options.script,
    clients: options.clients,
    durationSeconds: options.durationSeconds,
    transactions: number(/number of transactions actually processed: (\d+)/),
    tps: number(/tps = ([\d.]+) \(without initial connection time\)/),
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    failed: Math.max(failed, number(/number of failed transactions: (\d+)/) || 0),
    statements,
    loadAverage: [before, os.loadavg()[0]!]
  }
}
