/**
 * The API benchmark (issue 10): a throwaway PostgreSQL loaded with SQL alone, the
 * compiled API started as production starts it, every hot route driven over 127.0.0.1
 * with autocannon, pgbench sending the booking's own statements as the ceiling, the
 * API's memory, and what PostgreSQL ran for each route (auto_explain).
 *
 *   npm run bench                          every scale point: 10k and 1m spread, tight-10k and
 *                                          tight-1m (the synchronised fleet), wide (100,000 lorries)
 *   npm run bench -- --quick               10k and tight-10k, 2 s per route: under two minutes
 *   npm run bench -- --scale=10k,100k      any scale points (allocations; 100 per lorry), tight-N, wide
 *   npm run bench -- --scale=10m           10 million allocations: load time, disk size, one lorry's month
 *   options: --duration=S (per route) --connections=N --load-method=bulk|triggers
 *            --load-jobs=N --log-level=L (the API's LOG_LEVEL, default info) --no-build --out=DIR
 *
 * Writes services/api/bench/results/latest.json and latest.md (or --out). Every process
 * and temp dir it makes is removed on exit, on Ctrl-C, and after a hard time limit.
 * See docs/performance.md.
 */
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { repoRoot } from '../src/config.js'
import { createAccount, createFirstAdmin, createToken } from '../src/database/accounts.js'
import { postmasterPid, startEmbeddedPostgres } from '../src/boot/embedded.js'
import { ensureSchema } from './lib/schema.js'
import { generateToken, hashToken, tokenDisplayPrefix } from '../src/tokens.js'
import { nodeFlags, startApi, type ApiProcess } from './lib/api.js'
import { capture, disableCapture, enableCapture, ServerLog, type CaptureRequest } from './lib/capture.js'
import { BOOKING_SPACING_DAYS, BOOKINGS_PER_LORRY, CARS, DAY_MS, daysAgo, loadData, relationSizes, resourceIds, SITES, type LoadMethod, type Shape } from './lib/data.js'
import { drive, type RouteResult, type RouteSpec } from './lib/http.js'
import { ensurePgbench, runPgbench } from './lib/pgbench.js'
import { freePort } from '../../../scripts/lib/local.mjs'
import { cleanupAll, defer, installExitHandlers, stopPostgresAtExit, runToEnd, sleep, tempDir } from './lib/processes.js'
import { markdown, printTable, type Report, type ScaleResult } from './lib/report.js'

// ---- options -----------------------------------------------------------------

const argv = process.argv.slice(2)
const flag = (name: string) => argv.includes(`--${name}`)
const option = (name: string) => argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)
const known = ['quick', 'no-build', 'scale', 'duration', 'connections', 'load-method', 'load-jobs', 'log-level', 'out']
for (const arg of argv) {
  if (!known.includes(arg.replace(/^--/, '').split('=')[0]!)) {
    console.error(`unknown argument ${arg}; see the comment at the top of services/api/bench/run.ts`)
    process.exit(2)
  }
}

const quick = flag('quick')

/**
 * A scale point: a shape and a size. "10k" → 10,000 allocations spread (100 per lorry);
 * "tight-1m" → the synchronised fleet, 10,000 lorries booked 00:00-03:00 UTC on 100 days;
 * "wide" → 100,000 lorries at one site, booked 00:00-03:00 on 10 days, asked with site_id.
 * Scale points of 10 million allocations or more are measured for their load, their size
 * and one lorry's reads only: the point is that those stay flat.
 */
interface Scale { name: string, shape: Shape, lorries: number, bookings: number, sites: number, siteQueries: boolean, readsOnly: boolean }

function parseScale (text: string): Scale {
  const name = text.trim().toLowerCase()
  if (name === 'wide') return { name, shape: 'tight', lorries: 100_000, bookings: 10, sites: 1, siteQueries: true, readsOnly: false }
  const match = /^(tight-)?(\d+(?:\.\d+)?)([km]?)$/.exec(name)
  if (!match) throw new Error(`--scale: "${text}" is not a number of allocations such as 10k or 1m, tight-10k, or wide`)
  const allocations = Number(match[2]) * ({ k: 1e3, m: 1e6 }[match[3]!] ?? 1)
  const lorries = Math.round(allocations / BOOKINGS_PER_LORRY)
  if (lorries < 1) throw new Error(`--scale: ${text} is fewer than ${BOOKINGS_PER_LORRY} allocations (one lorry)`)
  return { name, shape: match[1] ? 'tight' : 'spread', lorries, bookings: BOOKINGS_PER_LORRY, sites: SITES, siteQueries: false, readsOnly: allocations >= 1e7 }
}

const scales = (option('scale') ?? (quick ? '10k,tight-10k' : '10k,1m,tight-10k,tight-1m,wide')).split(',').map(parseScale)
const durationSeconds = Number(option('duration') ?? (quick ? 2 : 10))
// Long enough for a route's statements to be prepared and planned on each pooled
// connection; half a second with --quick, whose warm-ups were a fifth of its run.
const warmupSeconds = quick ? 0.5 : 1
const connections = Number(option('connections') ?? 8)
const pgbenchClients = 8
const loadMethod = (option('load-method') ?? 'bulk') as LoadMethod
const loadJobs = Number(option('load-jobs') ?? 2)
const logLevel = option('log-level') ?? 'info'
const outDir = path.resolve(option('out') ?? path.join(repoRoot, 'services/api/bench/results'))
if (!['bulk', 'triggers'].includes(loadMethod)) throw new Error('--load-method is bulk or triggers')

// A bound on the whole run, whatever happens: generous for the 1m load, tight for --quick.
const limitMs = (quick ? 5 : 10 + scales.reduce((sum, s) => sum + 3 + s.lorries / 500, 0)) * 60_000
installExitHandlers(limitMs)

// ---- helpers ------------------------------------------------------------------

/** A small seeded PRNG, so two runs ask for the same windows and lorries. */
function random (seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const iso = (ms: number) => new Date(ms).toISOString()

function elapsed (start: number): string {
  return `${((performance.now() - start) / 1000).toFixed(1)} s`
}

// ---- the run ------------------------------------------------------------------

async function main (): Promise<void> {
  const runStart = performance.now()
  const startedAt = new Date().toISOString()
  const loadAverageAtStart = os.loadavg()

  if (!flag('no-build')) {
    console.log('npm run build')
    runToEnd('npm', ['run', 'build', '--silent'], 300_000)
  }
  const pgbenchVersion = ensurePgbench()

  const work = await tempDir('invsys-bench-')
  const serverLog = new ServerLog()
  const cluster = await startEmbeddedPostgres({
    dataDir: path.join(work, 'data'),
    port: await freePort(),
    database: 'postgres',
    onLog: (chunk) => serverLog.append(chunk)
  })
  defer('stop PostgreSQL', () => cluster.stop())
  stopPostgresAtExit(path.join(work, 'data'))
  const admin = new pg.Client({ connectionString: cluster.url })
  admin.on('error', () => undefined)
  await admin.connect()
  defer('close the admin connection', () => admin.end())
  const postgresVersion = (await admin.query<{ v: string }>('SELECT version() AS v')).rows[0]!.v.split(' on ')[0]!
  const postgresSettings = Object.fromEntries((await admin.query<{ name: string, setting: string }>(`
    SELECT name, current_setting(name) AS setting FROM pg_settings
    WHERE name IN ('shared_buffers', 'max_wal_size', 'fsync', 'synchronous_commit', 'full_page_writes', 'work_mem', 'max_connections')
    ORDER BY name`)).rows.map((row) => [row.name, row.setting]))
  // glibc's malloc settings as the server has them (POSTGRES_MALLOC_ENV): they change what a large query costs.
  const serverPid = await postmasterPid(path.join(work, 'data'))
  const serverEnv = serverPid === undefined ? '' : await fs.readFile(`/proc/${serverPid}/environ`, 'utf8').catch(() => '')
  for (const entry of serverEnv.split('\0').filter((e) => e.startsWith('MALLOC_'))) {
    const [name, value] = entry.split('=')
    postgresSettings[name!] = value!
  }
  console.log(`PostgreSQL ${postgresVersion} in ${work} (normal durability: ${JSON.stringify(postgresSettings)})`)

  const adminToken = generateToken()
  const tokenHash = hashToken(adminToken)
  const results: ScaleResult[] = []

  for (const scale of scales) {
    const scaleStart = performance.now()
    const database = `bench_${scale.name}`
    await admin.query(`CREATE DATABASE "${database}"`)
    const url = new URL(cluster.url)
    url.pathname = `/${database}`
    const databaseUrl = url.toString()
    // On Ctrl-C the admin connection may be gone already: the cluster goes with the temp dir anyway.
    const dropDatabase = defer(`drop database ${database}`, () => admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`).catch(() => undefined))

    // -- schema, first admin, data
    await ensureSchema(databaseUrl)
    const setup = new pg.Pool({ connectionString: databaseUrl, max: 1 })
    // When a step fails, the cluster is stopped with this pool's connection still idle in
    // it: that connection's end is expected, not a crash to print over the real error.
    setup.on('error', () => undefined)
    await createFirstAdmin(setup, { hash: tokenHash, prefix: tokenDisplayPrefix(adminToken) })
    const adminId = Number((await setup.query<{ id: string }>('SELECT id FROM account WHERE name = \'admin\'')).rows[0]!.id)
    const memberToken = generateToken()
    const member = await createAccount(setup, 'bench-member', 'member')
    await createToken(setup, member.id, { hash: hashToken(memberToken), prefix: tokenDisplayPrefix(memberToken), label: 'bench' })
    // Half the bookings before today, half after: spread over 700 days, tight over its days.
    const spanDays = scale.shape === 'spread' ? scale.bookings * BOOKING_SPACING_DAYS : scale.bookings
    const base = daysAgo(Math.floor(spanDays / 2))
    console.log(`\n[${scale.name}] loading ${scale.lorries.toLocaleString('en-GB')} lorries × ${scale.bookings} bookings, ${scale.shape}, at ${scale.sites} site${scale.sites === 1 ? '' : 's'} (${loadMethod})`)
    const load = await loadData(databaseUrl, { lorries: scale.lorries, bookings: scale.bookings, shape: scale.shape, sites: scale.sites, base, method: loadMethod, jobs: loadJobs })
    console.log(`[${scale.name}] loaded ${load.allocations.toLocaleString('en-GB')} allocations and ${load.historyRows.toLocaleString('en-GB')} history rows in ${load.allocationsSeconds.toFixed(1)} s (resources ${load.resourcesSeconds.toFixed(1)} s, vacuum/analyze/checkpoint ${load.vacuumSeconds.toFixed(1)} s)`)
    const sizeClient = await setup.connect()
    const sizes = await relationSizes(sizeClient)
    sizeClient.release()
    const sampleIds = (await setup.query<{ id: string }>('SELECT id FROM allocation ORDER BY random() LIMIT 500')).rows.map((row) => row.id)
    const siteId = scale.siteQueries ? (await setup.query<{ id: string }>('SELECT min(id) AS id FROM site')).rows[0]!.id : undefined
    await setup.end()

    // -- requests: random lorries and windows within the loaded span, distinct booking slots
    const rand = random(20261130)
    const pick = <T>(items: T[]) => items[Math.floor(rand() * items.length)]!
    const lorries = await resourceIds(databaseUrl, 'lorry')
    const cars = await resourceIds(databaseUrl, 'car')
    const lorry = () => pick(lorries)
    const windowOf = (days: number) => {
      const from = base.getTime() + Math.floor(rand() * (spanDays - days)) * DAY_MS
      return { from: iso(from), to: iso(from + days * DAY_MS) }
    }
    let booking = 0
    const nextBooking = () => {
      const i = booking++
      const start = Date.UTC(2031, 0, 1) + Math.floor(i / CARS) * 2 * 3600_000
      return { path: `/api/cars/${cars[i % CARS]}/allocations`, body: JSON.stringify({ starts_at: iso(start), ends_at: iso(start + 2 * 3600_000), description: 'bench' }) }
    }
    const q = (params: Record<string, string>) => new URLSearchParams(params).toString()
    const site: Record<string, string> = siteId === undefined ? {} : { site_id: siteId }
    // The synchronised fleet is asked about 01:00-02:00 of one of its days, when every lorry
    // is out; its week of slots starts at midnight, in the middle of a booking.
    const busyHour = () => { const { from } = windowOf(7); const at = Date.parse(from) + 3600_000; return { from: iso(at), to: iso(at + 3600_000) } }
    const available = (window: { from: string, to: string }) => ({ path: `/api/resources?${q({ type: 'lorry', ...site, available_from: window.from, available_to: window.to })}` })
    const slots = () => ({ path: `/api/slots?${q({ type: 'lorry', ...site, ...windowOf(7), duration: 'PT2H' })}` })
    const bookAny = (window: { from: string, to: string }) => ({ path: '/api/allocations', body: JSON.stringify({ type: 'lorry', ...(siteId === undefined ? {} : { site_id: Number(siteId) }), starts_at: window.from, ends_at: window.to, description: 'bench' }) })
    const twoHours = () => { const { from } = windowOf(1); const at = Date.parse(from) + Math.floor(rand() * 22) * 3600_000; return { from: iso(at), to: iso(at + 2 * 3600_000) } }
    const health: RouteSpec = { name: 'GET /health', method: 'GET', auth: false, next: () => ({ path: '/health' }) }
    const me: RouteSpec = { name: 'GET /api/me', method: 'GET', auth: true, next: () => ({ path: '/api/me' }) }
    const lorryMonth: RouteSpec = { name: 'GET /api/lorries/:id/allocations (month)', method: 'GET', auth: true, next: () => ({ path: `/api/lorries/${lorry()}/allocations?${q(windowOf(30))}` }) }
    const freeMonth: RouteSpec = { name: 'GET /api/resources/:id/free (month)', method: 'GET', auth: true, next: () => ({ path: `/api/resources/${lorry()}/free?${q(windowOf(30))}` }) }
    const history: RouteSpec = { name: 'GET /api/allocations/:id/history', method: 'GET', auth: true, next: () => ({ path: `/api/allocations/${pick(sampleIds)}/history` }) }
    const carBooking: RouteSpec = { name: 'POST /api/cars/:id/allocations', method: 'POST', auth: true, next: nextBooking }
    const tightRoutes = (as: 'admin' | 'member'): RouteSpec[] => [
      { name: `GET /api/resources?type=lorry&available_* (the busy hour, as ${as})`, method: 'GET', auth: true, as, next: () => available(busyHour()) },
      { name: `GET /api/slots?type=lorry&duration=PT2H (week, as ${as})`, method: 'GET', auth: true, as, next: slots },
      { name: `POST /api/allocations (book any lorry, the busy hour: 409, as ${as})`, method: 'POST', auth: true, as, next: () => bookAny(busyHour()) }
    ]
    const routes: RouteSpec[] = scale.readsOnly
      ? [health, me, lorryMonth, freeMonth, history]
      : scale.shape === 'tight'
        // One lorry's reads are the spread shape's too: --quick measures them there only.
        ? [health, ...tightRoutes('admin'), ...tightRoutes('member'), ...(quick ? [] : [lorryMonth, freeMonth])]
        : [health, me, lorryMonth,
            { name: 'GET /api/resources?type=lorry&available_* (day)', method: 'GET', auth: true, next: () => available(windowOf(1)) },
            { name: 'GET /api/slots?type=lorry&duration=PT2H (week)', method: 'GET', auth: true, next: slots },
            freeMonth,
            { name: 'GET /api/allocations?type=lorry (day)', method: 'GET', auth: true, next: () => ({ path: `/api/allocations?${q({ type: 'lorry', ...windowOf(1) })}` }) },
            history,
            { name: 'POST /api/allocations (book any lorry, 2 h)', method: 'POST', auth: true, next: () => bookAny(twoHours()) },
            carBooking]
    const tokenOf = (route: RouteSpec) => route.as === 'member' ? memberToken : adminToken

    // -- HTTP: each route warmed up, then measured
    let api: ApiProcess = await startApi(databaseUrl, adminToken, logLevel, work)
    const measured: RouteResult[] = []
    // A route whose requests outlive its run (autocannon gives up after 10 s, the API does
    // not) would still hold the pool during the next route's run: wait for the API's
    // sessions to go idle first (at most a minute).
    const waitForIdle = async () => {
      for (const start = Date.now(); Date.now() - start < 60_000; await sleep(200)) {
        const { rows } = await admin.query<{ busy: number }>(`SELECT count(*)::int AS busy FROM pg_stat_activity
          WHERE datname = $1 AND application_name = 'invsys-api' AND state <> 'idle'`, [database])
        if (rows[0]!.busy === 0) return
      }
      console.log(`[${scale.name}] the API still had busy sessions after 60 s; going on`)
    }
    for (const route of routes) {
      await waitForIdle()
      await drive(api.url, tokenOf(route), route, { durationSeconds: warmupSeconds, connections })
      const result = await drive(api.url, tokenOf(route), route, { durationSeconds, connections })
      measured.push(result)
      // Which route the peak resident memory comes from: the peak so far after each.
      const peakMb = ((await api.memory())?.peakRssKb ?? NaN) / 1024
      console.log(`[${scale.name}] ${route.name}: ${result.requestsPerSecond.toFixed(0)} req/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms, errors ${result.errors}, non-2xx ${result.non2xx}; API peak RSS so far ${peakMb.toFixed(0)} MB`)
    }
    // The booking's own figures, against its ceiling: where the spread data set has cars to book.
    const peakIndex = routes.indexOf(carBooking)
    let bookingFigures: Pick<ScaleResult, 'bookingAtHalfPeak' | 'pgbench'> = {}
    if (peakIndex !== -1) {
      const peak = measured[peakIndex]!
      const halfRate = Math.max(1, Math.floor(peak.requestsPerSecond / 2))
      await waitForIdle()
      const bookingAtHalfPeak = await drive(api.url, adminToken, carBooking, { durationSeconds, connections, overallRate: halfRate })
      console.log(`[${scale.name}] POST at ${halfRate}/s: ${bookingAtHalfPeak.requestsPerSecond.toFixed(0)} req/s, p50 ${bookingAtHalfPeak.p50Ms.toFixed(2)} ms, p99 ${bookingAtHalfPeak.p99Ms.toFixed(2)} ms, non-2xx ${bookingAtHalfPeak.non2xx}`)
      bookingFigures = { bookingAtHalfPeak }
    }
    const apiMemory = await api.memory()
    await api.stop()

    // -- pgbench: the same statements straight to PostgreSQL
    if (peakIndex !== -1) {
      const pgbenchDir = path.join(work, `pgbench-${scale.name}`)
      await fs.mkdir(pgbenchDir)
      const common = { databaseUrl, clients: pgbenchClients, durationSeconds, workDir: pgbenchDir, adminId, tokenHashHex: tokenHash.toString('hex') }
      const bare = await runPgbench({ ...common, script: 'bare', timeBase: Date.UTC(2035, 0, 1) / 1000 })
      const chain = await runPgbench({ ...common, script: 'chain', timeBase: Date.UTC(2040, 0, 1) / 1000 })
      for (const run of [bare, chain]) {
        console.log(`[${scale.name}] pgbench ${run.script}: ${run.tps.toFixed(0)} tps, p50 ${run.p50Ms.toFixed(2)} ms, p99 ${run.p99Ms.toFixed(2)} ms, failed ${run.failed}`)
      }
      bookingFigures = { ...bookingFigures, pgbench: { bare, chain } }
    }
    const ratioOf = (name: string, to: number) => {
      const at = routes.findIndex((route) => route.name === name)
      return at === -1 ? undefined : measured[at]!.requestsPerSecond / to
    }

    // -- what PostgreSQL ran for each route
    await enableCapture(admin, database)
    const undoCapture = defer('turn auto_explain off', () => disableCapture(admin, database))
    api = await startApi(databaseUrl, adminToken, logLevel, work)
    const send = (route: RouteSpec) => async () => {
      const { path: target, body } = route.next()
      const res = await fetch(`${api.url}${target}`, {
        method: route.method,
        headers: { authorization: `Bearer ${tokenOf(route)}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body } : {})
      })
      await res.arrayBuffer()
      return res.status
    }
    const monthAvailable: RouteSpec = { name: 'GET /api/resources?type=lorry&available_* (month)', method: 'GET', auth: true, next: () => available(windowOf(30)) }
    const captureList: CaptureRequest[] = [...routes.filter((route) => route !== health), ...(scale.shape === 'spread' && !scale.readsOnly ? [monthAvailable] : [])]
      .map((route) => ({ label: route.name, run: send(route) }))
    const captured = await capture(admin, serverLog, captureList)
    await api.stop()
    await undoCapture()
    const databaseSize = (await admin.query<{ size: string }>('SELECT pg_size_pretty(pg_database_size($1)) AS size', [database])).rows[0]!.size

    const result: ScaleResult = {
      name: scale.name,
      shape: scale.shape,
      lorries: scale.lorries,
      allocations: load.allocations,
      load,
      sizes: { database: databaseSize, ...sizes },
      routes: measured,
      ...bookingFigures,
      ratios: {
        meToHealth: ratioOf(me.name, measured[0]!.requestsPerSecond),
        bookingToChain: bookingFigures.pgbench && ratioOf(carBooking.name, bookingFigures.pgbench.chain.tps),
        bookingToBare: bookingFigures.pgbench && ratioOf(carBooking.name, bookingFigures.pgbench.bare.tps)
      },
      apiMemory,
      captured
    }
    results.push(result)
    await dropDatabase()
    console.log(`[${scale.name}] done in ${elapsed(scaleStart)}`)
  }

  const report: Report = {
    startedAt,
    finishedAt: new Date().toISOString(),
    quick,
    machine: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model ?? 'unknown',
      memoryGb: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      postgres: postgresVersion,
      pgbench: pgbenchVersion,
      loadAverageAtStart,
      note: 'The machine is shared: other work may run during the measurements, and autocannon, the API and PostgreSQL share its cores, so compare ratios within one run rather than absolute numbers across runs.'
    },
    settings: { durationSeconds, warmupSeconds, connections, pgbenchClients, loadMethod, loadJobs, apiPoolMax: 10, logLevel, nodeFlags: nodeFlags(), postgresSettings },
    scales: results
  }

  await fs.mkdir(outDir, { recursive: true })
  await fs.writeFile(path.join(outDir, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`)
  await fs.writeFile(path.join(outDir, 'latest.md'), markdown(report))
  console.log('')
  for (const scale of results) console.log(`${printTable(scale, report)}\n`)
  console.log(`reports: ${path.relative(process.cwd(), path.join(outDir, 'latest.md'))} and latest.json; whole run ${elapsed(runStart)}`)
}

try {
  await main()
  await cleanupAll()
  process.exit(0)
} catch (error) {
  console.error(error)
  await cleanupAll()
  process.exit(1)
}
