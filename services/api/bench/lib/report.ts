/** The printed table, the JSON report and the markdown report. */
import type { Captured } from './capture.js'
import { isTokenLookup } from './capture.js'
import type { LoadTimings, Shape } from './data.js'
import type { RouteResult } from './http.js'
import type { PgbenchResult } from './pgbench.js'

export interface ScaleResult {
  name: string
  shape: Shape
  lorries: number
  allocations: number
  load: LoadTimings
  sizes: Record<string, string>
  routes: RouteResult[]
  /** Where the scale point books cars (the spread data set, below 10 million). */
  bookingAtHalfPeak?: RouteResult
  pgbench?: { bare: PgbenchResult, chain: PgbenchResult }
  ratios: { meToHealth?: number, bookingToChain?: number, bookingToBare?: number }
  apiMemory: { peakRssKb: number, rssKb: number } | undefined
  captured: Captured[]
}

export interface Report {
  startedAt: string
  finishedAt: string
  quick: boolean
  machine: { cpus: number, model: string, memoryGb: number, node: string, postgres: string, pgbench: string, loadAverageAtStart: number[], note: string }
  settings: {
    durationSeconds: number
    warmupSeconds: number
    connections: number
    pgbenchClients: number
    loadMethod: string
    loadJobs: number
    apiPoolMax: number
    logLevel: string
    /** package.json's config.nodeFlags, which the API ran with. */
    nodeFlags: string[]
    postgresSettings: Record<string, string>
  }
  scales: ScaleResult[]
}

const fmt = (value: number, digits = 0) => Number.isFinite(value) ? value.toLocaleString('en-GB', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '–'

interface Row { route: string, rps: string, p50: string, p99: string, errors: string, ratio: string }

function rows (scale: ScaleResult): Row[] {
  const byName = new Map(scale.routes.map((r) => [r.name, r]))
  const out: Row[] = scale.routes.map((r) => ({
    route: r.name,
    rps: fmt(r.requestsPerSecond),
    p50: fmt(r.p50Ms, 2),
    p99: fmt(r.p99Ms, 2),
    errors: `${r.errors} / ${r.non2xx}`,
    ratio: ''
  }))
  const me = out.find((row) => row.route.startsWith('GET /api/me'))
  if (me && scale.ratios.meToHealth !== undefined) me.ratio = `${fmt(scale.ratios.meToHealth, 2)} of /health`
  const booking = out.find((row) => row.route.startsWith('POST /api/cars') && byName.get(row.route)?.rate === undefined)
  if (booking && scale.ratios.bookingToChain !== undefined) booking.ratio = `${fmt(scale.ratios.bookingToChain, 2)} of pgbench chain, ${fmt(scale.ratios.bookingToBare ?? NaN, 2)} of bare`
  const half = scale.bookingAtHalfPeak
  if (half) out.push({ route: `${half.name} at ${fmt(half.rate ?? NaN)}/s (half peak)`, rps: fmt(half.requestsPerSecond), p50: fmt(half.p50Ms, 2), p99: fmt(half.p99Ms, 2), errors: `${half.errors} / ${half.non2xx}`, ratio: '' })
  for (const run of scale.pgbench ? [scale.pgbench.bare, scale.pgbench.chain] : []) {
    out.push({
      route: run.script === 'bare' ? `pgbench: booking INSERT alone (${run.clients} clients)` : `pgbench: token lookup, then the INSERT (${run.clients} clients)`,
      rps: fmt(run.tps),
      p50: fmt(run.p50Ms, 2),
      p99: fmt(run.p99Ms, 2),
      errors: `${run.failed} / –`,
      ratio: 'ceiling'
    })
  }
  return out
}

const HEAD: Row = { route: 'route', rps: 'req/s', p50: 'p50 ms', p99: 'p99 ms', errors: 'errors / non-2xx', ratio: 'ratio' }

export function printTable (scale: ScaleResult, report: Report): string {
  const all = [HEAD, ...rows(scale)]
  const width = (key: keyof Row) => Math.max(...all.map((row) => row[key].length))
  const line = (row: Row) => [row.route.padEnd(width('route')), row.rps.padStart(width('rps')), row.p50.padStart(width('p50')),
    row.p99.padStart(width('p99')), row.errors.padStart(width('errors')), row.ratio].join('  ').trimEnd()
  const load = scale.load
  return [
    `scale ${scale.name} (${scale.shape}): ${fmt(scale.lorries)} lorries, ${fmt(scale.allocations)} allocations; ${report.settings.connections} connections, ${report.settings.durationSeconds} s per route; API at LOG_LEVEL=${report.settings.logLevel}; shared machine (${report.machine.cpus} cores, see load averages in the report)`,
    `load (${load.method}, ${load.jobs} session${load.jobs === 1 ? '' : 's'}): allocations + history ${fmt(load.allocationsSeconds, 1)} s, resources ${fmt(load.resourcesSeconds, 1)} s, vacuum/analyze/checkpoint ${fmt(load.vacuumSeconds, 1)} s; sizes ${Object.entries(scale.sizes).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    ...all.map(line),
    `API process memory: peak RSS (VmHWM) ${scale.apiMemory ? fmt(scale.apiMemory.peakRssKb / 1024, 1) : '–'} MB, RSS at the end ${scale.apiMemory ? fmt(scale.apiMemory.rssKb / 1024, 1) : '–'} MB`,
    `statements per request (captured): ${scale.captured.map((c) => `${c.label} ${c.statements.length}`).join('; ')}`
  ].join('\n')
}

function markdownTable (scale: ScaleResult): string {
  const all = rows(scale)
  return ['| route | req/s | p50 ms | p99 ms | errors / non-2xx | ratio |', '|---|---:|---:|---:|---:|---|',
    ...all.map((r) => `| ${r.route} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.ratio} |`)].join('\n')
}

function capturedMarkdown (captured: Captured): string {
  const parts = [`#### ${captured.label} (HTTP ${captured.status})`, '', `Statements sent, one round trip each (${captured.statements.length}):`, '']
  captured.statements.forEach((sql, i) => parts.push(`${i + 1}. \`${sql.length > 300 ? `${sql.slice(0, 300)} …` : sql}\``))
  for (const plan of captured.plans) {
    if (isTokenLookup(plan) && !captured.label.startsWith('GET /api/me')) {
      parts.push('', `Token lookup: ${plan.totalMs.toFixed(3)} ms (its plan is under GET /api/me).`)
      continue
    }
    parts.push('', plan.count === 1
      ? `\`${plan.queryText.length > 200 ? `${plan.queryText.slice(0, 200)} …` : plan.queryText}\` — ${plan.totalMs.toFixed(3)} ms`
      : `\`${plan.queryText.length > 200 ? `${plan.queryText.slice(0, 200)} …` : plan.queryText}\` — **run ${plan.count} times** in this request, ${plan.totalMs.toFixed(3)} ms in all; the first run's plan:`)
    if (plan.parameters) parts.push('', `Parameters: ${plan.parameters.length > 400 ? `${plan.parameters.slice(0, 400)} …` : plan.parameters}`)
    parts.push('', '```', plan.plan, '```')
  }
  return parts.join('\n')
}

export function markdown (report: Report): string {
  const m = report.machine
  const out = [
    '# invsys API benchmark',
    '',
    `Run ${report.startedAt} → ${report.finishedAt}${report.quick ? ' (--quick)' : ''}. Produced by \`npm run bench\`; see docs/performance.md for how to read it.`,
    '',
    `Machine: ${m.cpus} cores (${m.model}), ${m.memoryGb} GB, Node ${m.node}, ${m.postgres}, ${m.pgbench}. ${m.note} Load average at start: ${m.loadAverageAtStart.map((l) => l.toFixed(2)).join(', ')}.`,
    '',
    `Settings: the API at LOG_LEVEL=${report.settings.logLevel}, node ${report.settings.nodeFlags.join(' ')}; ${report.settings.durationSeconds} s per route after ${report.settings.warmupSeconds} s of warm-up, ${report.settings.connections} HTTP connections, pgbench ${report.settings.pgbenchClients} clients (-M prepared), API pool ${report.settings.apiPoolMax}; bulk load ${report.settings.loadMethod} with ${report.settings.loadJobs} sessions. PostgreSQL: ${Object.entries(report.settings.postgresSettings).map(([k, v]) => `${k}=${v}`).join(', ')}.`,
    ''
  ]
  for (const scale of report.scales) {
    const load = scale.load
    out.push(`## Scale ${scale.name} (${scale.shape}): ${fmt(scale.lorries)} lorries, ${fmt(scale.allocations)} allocations`, '',
      `Bulk load (${load.method}, ${load.jobs} session${load.jobs === 1 ? '' : 's'}): allocations and their ${fmt(load.historyRows)} history rows in ${fmt(load.allocationsSeconds, 1)} s; sites and resources ${fmt(load.resourcesSeconds, 1)} s; VACUUM (ANALYZE) and CHECKPOINT ${fmt(load.vacuumSeconds, 1)} s. History checked against allocation_snapshot() on ${load.historySampleChecked} sampled rows. Sizes: ${Object.entries(scale.sizes).map(([k, v]) => `${k} ${v}`).join(', ')}.`,
      '', markdownTable(scale), '',
      `Load average (1 min) before/after each route: ${scale.routes.map((r) => `${r.name.split(' (')[0]} ${r.loadAverage.map((l) => l.toFixed(1)).join('→')}`).join('; ')}.`,
      '',
      `API process memory: peak RSS (VmHWM) ${scale.apiMemory ? fmt(scale.apiMemory.peakRssKb / 1024, 1) : '–'} MB, RSS at the end ${scale.apiMemory ? fmt(scale.apiMemory.rssKb / 1024, 1) : '–'} MB.`,
      '',
      'pgbench average latency per statement (ms, -r):', '')
    for (const run of scale.pgbench ? [scale.pgbench.bare, scale.pgbench.chain] : []) {
      out.push(`- ${run.script}: ${run.statements.map((s) => `${s.ms} \`${s.sql.slice(0, 60)}${s.sql.length > 60 ? '…' : ''}\``).join(', ')}`)
    }
    out.push('', `### What PostgreSQL ran, per request (scale ${scale.name})`, '',
      'auto_explain (ANALYZE, BUFFERS, nested statements) and log_statement = all, one request per route after an identical warm-up request, on a separate API process started for this; timings include auto_explain\'s own overhead.', '')
    for (const captured of scale.captured) out.push(capturedMarkdown(captured), '')
  }
  return out.join('\n')
}
