/**
 * Drives one route with autocannon over 127.0.0.1 for a fixed time, each request built
 * by `next()` (a random lorry, a distinct slot, ...), and reduces the result to what the
 * report shows.
 */
import os from 'node:os'
import autocannon from 'autocannon'
import { defer } from './processes.js'

export interface RouteSpec {
  /** What the table shows, e.g. "GET /api/lorries/:id/allocations (month)". */
  name: string
  method: 'GET' | 'POST'
  /** Sends the admin's token. */
  auth: boolean
  /** Whose token: the admin's (default) or a member's, whom the member booking rules bind. */
  as?: 'admin' | 'member'
  /** Path (with query) and body of the next request. */
  next: () => { path: string, body?: string }
}

export interface RouteResult {
  name: string
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  requests: number
  /** Connection errors and timeouts. */
  errors: number
  non2xx: number
  statusCodes: Record<string, number>
  durationSeconds: number
  connections: number
  /** Requests per second asked for (overallRate), when limited. */
  rate?: number
  /** 1-minute load average of the machine before and after: it is shared. */
  loadAverage: [number, number]
}

export interface LoadOptions {
  durationSeconds: number
  connections: number
  overallRate?: number
}

export async function drive (baseUrl: string, token: string, route: RouteSpec, options: LoadOptions): Promise<RouteResult> {
  const headers: Record<string, string> = {}
  if (route.auth) headers.authorization = `Bearer ${token}`
  if (route.method === 'POST') headers['content-type'] = 'application/json'
  const before = os.loadavg()[0]!
  const instance = autocannon({
    url: baseUrl,
    connections: options.connections,
    duration: options.durationSeconds,
    ...(options.overallRate ? { overallRate: options.overallRate } : {}),
    timeout: 10,
    requests: [{
      method: route.method,
      headers,
      setupRequest: (request) => {
        const { path, body } = route.next()
        return { ...request, path, ...(body === undefined ? {} : { body }) }
      }
    }]
  // Without a callback it is both the running instance (stop()) and a promise of the result.
  }) as unknown as autocannon.Instance & PromiseLike<autocannon.Result>
  // autocannon's own histogram keeps whole milliseconds; each response's time is exact.
  const times: number[] = []
  instance.on('response', (...args: unknown[]) => { times.push(args[3] as number) })
  const undo = defer(`stop autocannon (${route.name})`, () => instance.stop())
  const result = await instance
  times.sort((a, b) => a - b)
  const percentile = (p: number) => times.length === 0 ? NaN : times[Math.min(times.length - 1, Math.floor(p * times.length))]!
  await undo()
  const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, stat]) => [code, stat.count ?? 0]))
  return {
    name: route.name,
    requestsPerSecond: result.requests.total / result.duration,
    p50Ms: percentile(0.5),
    p99Ms: percentile(0.99),
    requests: result.requests.total,
    errors: result.errors,
    non2xx: result.non2xx,
    statusCodes,
    durationSeconds: result.duration,
    connections: options.connections,
    ...(options.overallRate ? { rate: options.overallRate } : {}),
    loadAverage: [before, os.loadavg()[0]!]
  }
}
