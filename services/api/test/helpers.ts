import fs from 'node:fs/promises'
import type net from 'node:net'
import path from 'node:path'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import pg from 'pg'
import { buildApp } from '../src/app.js'
import { startEmbeddedPostgres } from '../src/boot/embedded.js'
import { prepareDatabase } from '../src/boot/prepare.js'
import { loadConfig, repoRoot } from '../src/config.js'
import { generateToken } from '../src/tokens.js'
import { findSharedCluster, TEMPLATES } from './cluster/shared.js'
import { freePort, tempDir, untapped } from '../../../scripts/lib/local.mjs'

export { freePort, tempDir, untapped }

type Tap = { teardown: (fn: () => unknown) => void }

/** Stops once, however often it is called (by a test and again at teardown). */
function once (stop: () => Promise<void>): () => Promise<void> {
  let stopped: Promise<void> | undefined
  return () => (stopped ??= stop())
}

/** A throwaway cluster of this file's own, stopped and deleted at teardown. */
async function startOwnCluster (t: Tap): Promise<{ dir: string, url: string, stop: () => Promise<void> }> {
  const dir = await tempDir('invsys-test-')
  const database = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), port: await freePort(), database: 'invsys', fast: true })
  const stop = once(database.stop)
  t.teardown(async () => {
    await stop()
    await fs.rm(dir, { recursive: true, force: true })
  })
  return { dir, url: database.url, stop }
}

let databases = 0

/**
 * A new database of this file's own in the run's shared cluster (test/cluster/), dropped
 * at teardown: empty, or a copy of a template (migrated; or migrated with the mock data).
 * Undefined when the file runs outside tap, without a shared cluster.
 */
async function sharedDatabase (t: Tap, template: keyof typeof TEMPLATES | 'empty'): Promise<string | undefined> {
  const cluster = await findSharedCluster()
  if (!cluster) return undefined
  databases += 1
  const name = `test_${process.pid}_${databases}`
  const source = template === 'empty' ? 'template0' : TEMPLATES[template]
  // FILE_COPY: copying the few megabytes of a template's files beats writing them through the WAL.
  await sql({ databaseUrl: cluster.url }, `CREATE DATABASE ${name} TEMPLATE ${source} STRATEGY FILE_COPY`)
  t.teardown(() => sql({ databaseUrl: cluster.url }, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  return cluster.url.replace(/\/[^/]+$/, `/${name}`)
}

/** An empty database for one test file (in the run's shared cluster, or a cluster of its own). */
export async function startTestDatabase (t: Tap): Promise<{ url: string }> {
  const url = await sharedDatabase(t, 'empty')
  return url ? { url } : startOwnCluster(t)
}

/** The token `call` sends when told nothing else: the test app's first admin's. */
const defaultTokens = new WeakMap<FastifyInstance, string>()

export type TestApp = FastifyInstance & { databaseUrl: string, stopDatabase: () => Promise<void>, adminToken: string }

/**
 * The very app server.ts runs, started the way server.ts starts it (prepareDatabase:
 * migrated, with the mock data when asked, and the first admin made with a fresh
 * BOOTSTRAP_ADMIN_TOKEN that `call` then sends by default), on a copy of the run's
 * template database. `logLevel` and `logStream` let a test read the logs; `env` adds to
 * the environment the configuration is read from; `ownCluster` gives the app an embedded
 * cluster of its own, which `stopDatabase` can stop under it.
 */
export interface TestAppOptions {
  seed?: boolean
  logLevel?: string
  logStream?: { write: (line: string) => void }
  env?: Record<string, string>
  ownCluster?: boolean
}

export async function buildTestApp (t: Tap, options: TestAppOptions = {}): Promise<TestApp> {
  const adminToken = generateToken()
  const shared = options.ownCluster ? undefined : await sharedDatabase(t, options.seed ? 'seeded' : 'migrated')
  const own = shared ? undefined : await startOwnCluster(t)
  const config = loadConfig({
    LOG_LEVEL: options.logLevel ?? 'silent',
    DATABASE_URL: shared ?? own!.url,
    SEED_MOCK_DATA: String(options.seed ?? false),
    BOOTSTRAP_ADMIN_TOKEN: adminToken,
    // A loaded CI machine must not turn test requests into 503 SERVER_BUSY; edges.test.ts turns it on.
    MAX_EVENT_LOOP_DELAY_MS: '0',
    ...options.env
  })
  const database = await prepareDatabase(config, { firstAdmin: true })
  const stopDatabase = own?.stop ?? (() => { throw new Error('stopDatabase needs buildTestApp(t, { ownCluster: true })') })
  const app = await buildApp({ ...config, databaseUrl: database.url }, { logStream: options.logStream })
  t.teardown(() => app.close())
  defaultTokens.set(app, adminToken)
  return Object.assign(app, { databaseUrl: database.url, stopDatabase, adminToken })
}

export type Response = LightMyRequestResponse

/** The Authorization header for `token`. */
export function bearer (token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` }
}

/**
 * JSON request through app.inject, as the test app's admin unless `options.token`
 * says otherwise: another token, or null for none.
 */
export async function call (app: FastifyInstance, method: InjectOptions['method'], url: string, body?: unknown, options: { token?: string | null } = {}): Promise<Response> {
  const token = options.token === undefined ? defaultTokens.get(app) : options.token
  return app.inject({
    method,
    url,
    ...(token ? { headers: bearer(token) } : {}),
    ...(body === undefined ? {} : { payload: body as object })
  })
}

export interface TestAccount { id: number, name: string, role: 'admin' | 'member', token: string, tokenId: string }

/** A new account with one token, made through the API by the test app's admin. */
export async function createAccount (app: FastifyInstance, role: 'admin' | 'member' = 'member'): Promise<TestAccount> {
  const account = await call(app, 'POST', '/api/accounts', { name: unique(role), role })
  if (account.statusCode !== 201) throw new Error(`account not created: ${account.body}`)
  const { id, name } = account.json()
  const token = await call(app, 'POST', `/api/accounts/${id}/tokens`, { label: 'test' })
  if (token.statusCode !== 201) throw new Error(`token not created: ${token.body}`)
  return { id, name, role, token: token.json().token, tokenId: token.json().id }
}

let counter = 0
/** Names unique within a run, so tests sharing a database never collide by accident. */
export function unique (prefix: string): string {
  counter += 1
  return `${prefix}-${process.pid}-${counter}`
}

export async function createSite (app: FastifyInstance, fields: Record<string, unknown> = {}): Promise<{ id: number }> {
  const res = await call(app, 'POST', '/api/sites', { name: unique('site'), ...fields })
  if (res.statusCode !== 201) throw new Error(`site not created: ${res.body}`)
  return res.json()
}

export async function createResource (app: FastifyInstance, type: string, fields: Record<string, unknown> = {}): Promise<{ id: string, name: string }> {
  const res = await call(app, 'POST', '/api/resources', { type, name: unique(type), ...fields })
  if (res.statusCode !== 201) throw new Error(`resource not created: ${res.body}`)
  return res.json()
}

export async function book (app: FastifyInstance, resourceId: string, startsAt: string | null, endsAt: string | null, extra: Record<string, unknown> = {}): Promise<Response> {
  return call(app, 'POST', `/api/resources/${resourceId}/allocations`, { starts_at: startsAt, ends_at: endsAt, ...extra })
}

/** Runs SQL the way a psql user would: on its own connection, outside the API. */
export async function sql<R extends Record<string, unknown> = Record<string, unknown>> (app: { databaseUrl: string }, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: app.databaseUrl })
  await client.connect()
  try {
    return (await client.query<R>(text, values)).rows
  } finally {
    await client.end()
  }
}

/**
 * Ends the sessions named `application` (pg_stat_activity's application_name) in the app's
 * own database, as a failover would, and says how many. Every file's database lives in the
 * run's one cluster, so the other files' sessions are left alone.
 */
export async function endSessions (app: { databaseUrl: string }, application: string): Promise<number> {
  return (await sql(app, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()', [application])).length
}

/** The token fetchJson sends to a listening test app when told nothing else, by base URL. */
const baseTokens = new Map<string, string>()

/** Listens on a free loopback port and gives the base URL: concurrency tests go over real HTTP. */
export async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as net.AddressInfo
  const base = `http://127.0.0.1:${port}`
  const token = defaultTokens.get(app)
  if (token) baseTokens.set(base, token)
  return base
}

/**
 * A JSON request over real HTTP, as the admin of the test app behind `url` (like `call`)
 * unless `headers` carries its own authorization; the reply body is parsed when there is
 * one (typed loosely, like inject's json()).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function fetchJson (url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: any, headers: Headers }> {
  const token = baseTokens.get(new URL(url).origin)
  const res = await fetch(url, {
    method,
    headers: { ...(token ? bearer(token) : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await res.text()
  return { status: res.status, body: text === '' ? null : JSON.parse(text), headers: res.headers }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A directory under node_modules, removed when the test ends: code written there (a
 * generated client, a receiver copied from the docs) resolves the project's packages.
 */
export async function packageScratchDir (t: { teardown: (fn: () => unknown) => void }, prefix: string): Promise<string> {
  const cache = path.join(repoRoot, 'node_modules', '.cache')
  await fs.mkdir(cache, { recursive: true })
  const dir = await fs.mkdtemp(path.join(cache, prefix))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  return dir
}
