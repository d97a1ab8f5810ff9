import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseCidrs, type Cidr } from './outbound.js'
import { DEVELOPMENT_ADMIN_TOKEN, TOKEN_FORMAT } from './tokens.js'

/** Everything the service can be told, validated once at boot. */
export interface Config {
  port: number
  host: string
  /** Unset: the server starts an embedded PostgreSQL itself. */
  databaseUrl: string | undefined
  /**
   * Where searches that need not see the caller's own latest write may read (a port that
   * reaches hot standbys); unset: everything reads the primary.
   */
  databaseReadUrl: string | undefined
  /** The most replication lag (ms) a search read from DATABASE_READ_URL may see; beyond it, the primary answers. */
  databaseReadMaxLagMs: number
  embeddedDataDir: string
  embeddedPort: number
  /** Load postgres_scripts/mock_data.sql when the schema is created on an empty database. */
  seedMockData: boolean
  /** Apply pending migrations at start; false: refuse to start until the operator has (npm run migrate). */
  migrateOnStart: boolean
  trustProxy: boolean
  logLevel: string
  bodyLimit: number
  poolMax: number
  /** How long a request waits for a pooled connection (or a new one) before it is answered 503. */
  poolWaitMs: number
  /** Token lookups each replica keeps (for a minute, dropped on revocation); 0 turns that off. */
  authCacheSize: number
  /** Mean event loop delay (ms) which, exceeded three readings in a row, sheds requests with 503 SERVER_BUSY; 0: never. */
  maxEventLoopDelayMs: number
  /** NODE_ENV=production: the published development token is refused everywhere. */
  production: boolean
  /**
   * The token of the `admin` account created on first start (when there is no account
   * yet): BOOTSTRAP_ADMIN_TOKEN, else the development token with the embedded database
   * outside production;
   * undefined means the server generates one and logs it once.
   */
  bootstrapAdminToken: { token: string, source: 'BOOTSTRAP_ADMIN_TOKEN' | 'development' } | undefined
  /** Days the change feed serves an event (GET /api/events); older cursors are 410 CURSOR_EXPIRED. */
  eventRetentionDays: number
  /** Seconds to wait before each attempt to deliver an event to a webhook (the first is usually 0: at once). */
  webhookRetrySchedule: number[]
  /** Ranges webhooks may be sent to although they are loopback, private, link-local... (default none). */
  webhookAllowedCidrs: Cidr[]
}

export class ConfigError extends Error {}

/** The repository root, found from this file so it works from src/ (tsx) and dist/ (node). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

function integer (env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`)
  }
  return Number(raw)
}

function boolean (env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  if (raw === 'true' || raw === '1') return true
  if (raw === 'false' || raw === '0') return false
  throw new ConfigError(`${name} must be true or false, got "${raw}"`)
}

function safeDecode (text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

function databaseUrl (env: NodeJS.ProcessEnv, name: 'DATABASE_URL' | 'DATABASE_READ_URL'): string | undefined {
  const raw = env[name]
  if (raw === undefined || raw === '') return undefined
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ConfigError(`${name} must be a URL such as postgres://user:password@host:5432/dbname`)
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError(`${name} must start with postgres:// or postgresql://, got "${url.protocol}//"`)
  }
  // .env.prod.example's password is a placeholder: a server must never run on it. The
  // message names the variable, never the value.
  if (env.NODE_ENV === 'production' && /CHANGE_ME/i.test(safeDecode(url.password))) {
    throw new ConfigError(`${name} still has the placeholder password of .env.prod.example (CHANGE_ME…): set a real one ` +
      '(docs/deployment.md, "First deployment")')
  }
  return raw
}

/**
 * BOOTSTRAP_ADMIN_TOKEN, checked for shape only. The message never repeats the value:
 * it is a secret, and this line goes to the terminal and to log collectors.
 */
function bootstrapAdminToken (env: NodeJS.ProcessEnv, embedded: boolean): Config['bootstrapAdminToken'] {
  const raw = env.BOOTSTRAP_ADMIN_TOKEN
  if (raw === undefined || raw === '') {
    // The well-known development token only where nothing else can reach: the embedded
    // database of a developer's machine, outside production. Otherwise a token is generated.
    return embedded && env.NODE_ENV !== 'production' ? { token: DEVELOPMENT_ADMIN_TOKEN, source: 'development' } : undefined
  }
  if (!TOKEN_FORMAT.test(raw)) {
    throw new ConfigError('BOOTSTRAP_ADMIN_TOKEN must be invsys_ followed by 24 to 200 letters, digits, - or _ (make one with: npm run token -- generate)')
  }
  if (raw === DEVELOPMENT_ADMIN_TOKEN && env.NODE_ENV === 'production') {
    throw new ConfigError('BOOTSTRAP_ADMIN_TOKEN must not be the published development token when NODE_ENV=production')
  }
  return { token: raw, source: 'BOOTSTRAP_ADMIN_TOKEN' }
}

/**
 * The Standard Webhooks schedule: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h,
 * 20 h and 24 h after each failure (each but the first with jitter).
 */
const DEFAULT_RETRY_SCHEDULE = [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]

function retrySchedule (env: NodeJS.ProcessEnv): number[] {
  const raw = env.WEBHOOK_RETRY_SCHEDULE
  if (raw === undefined || raw === '') return DEFAULT_RETRY_SCHEDULE
  const entries = raw.split(',').map((entry) => entry.trim())
  if (entries.length > 50 || entries.some((entry) => !/^\d+(\.\d{1,3})?$/.test(entry) || Number(entry) > 604800)) {
    throw new ConfigError(`WEBHOOK_RETRY_SCHEDULE must be 1 to 50 comma-separated seconds (each at most 604800), e.g. 0,5,300, got "${raw}"`)
  }
  return entries.map(Number)
}

function allowedCidrs (env: NodeJS.ProcessEnv): Cidr[] {
  try {
    return parseCidrs(env.WEBHOOK_ALLOWED_CIDRS ?? '')
  } catch (error) {
    throw new ConfigError(`WEBHOOK_ALLOWED_CIDRS must be comma-separated addresses or ranges: ${(error as Error).message}`)
  }
}

/** Reads and validates the environment; throws ConfigError naming the first bad variable. */
export function loadConfig (env: NodeJS.ProcessEnv = process.env): Config {
  const url = databaseUrl(env, 'DATABASE_URL')
  const readUrl = databaseUrl(env, 'DATABASE_READ_URL')
  // Replicas of the embedded database do not exist: reading "from them" would read it.
  if (readUrl !== undefined && url === undefined) throw new ConfigError('DATABASE_READ_URL needs DATABASE_URL (the primary its replicas follow)')
  const logLevel = env.LOG_LEVEL || 'info'
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`)
  }
  return {
    port: integer(env, 'PORT', 3000, 0, 65535),
    host: env.HOST || '127.0.0.1',
    databaseUrl: url,
    databaseReadUrl: readUrl,
    databaseReadMaxLagMs: integer(env, 'DATABASE_READ_MAX_LAG_MS', 1000, 0, 3600000),
    embeddedDataDir: path.resolve(env.EMBEDDED_PG_DIR || path.join(repoRoot, '.data', 'postgres')),
    embeddedPort: integer(env, 'EMBEDDED_PG_PORT', 54329, 1, 65535),
    seedMockData: boolean(env, 'SEED_MOCK_DATA', url === undefined),
    migrateOnStart: boolean(env, 'MIGRATE_ON_START', true),
    trustProxy: boolean(env, 'TRUST_PROXY', false),
    logLevel,
    bodyLimit: integer(env, 'BODY_LIMIT', 1048576, 1024, 104857600),
    poolMax: integer(env, 'PG_POOL_MAX', 10, 1, 1000),
    poolWaitMs: integer(env, 'PG_POOL_WAIT_MS', 5000, 100, 600000),
    authCacheSize: integer(env, 'AUTH_CACHE_SIZE', 10000, 0, 10000000),
    maxEventLoopDelayMs: integer(env, 'MAX_EVENT_LOOP_DELAY_MS', 1000, 0, 600000),
    production: env.NODE_ENV === 'production',
    bootstrapAdminToken: bootstrapAdminToken(env, url === undefined),
    eventRetentionDays: integer(env, 'EVENT_RETENTION_DAYS', 30, 1, 36500),
    webhookRetrySchedule: retrySchedule(env),
    webhookAllowedCidrs: allowedCidrs(env)
  }
}
