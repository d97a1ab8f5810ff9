import { createHash, randomUUID } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { Type, type TSchema } from '@sinclair/typebox'
import { actorOf } from './auth.js'
import type pg from 'pg'
import { nothingCommitted, type Db } from '../database/db.js'
import { claimKey, completeKey, findKey, purgeExpiredKeys, storeKey, type KeyClaim, type StoredKey } from '../database/idempotency.js'
import { errorInstead, HttpError, writeFailure } from './errors.js'
import { errorResponses, mergeErrorResponses } from '../schemas/common.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A creating POST: honours the Idempotency-Key header. Its handler must write with `request.db`. */
    idempotent?: boolean
  }
  interface FastifyRequest {
    /**
     * What a creating POST writes with: the transaction that holds its Idempotency-Key
     * (so the change and its stored response commit together, or neither), else the pool.
     */
    readonly db: Db
  }
}

/** A key held by a running request: the claim, and the transaction it was made in. */
interface HeldKey { claim: KeyClaim, hash: string, client: pg.PoolClient }

const IDEMPOTENCY_HEADER = 'idempotency-key'

const IdempotencyHeaders = Type.Object({
  [IDEMPOTENCY_HEADER]: Type.Optional(Type.String({
    minLength: 1,
    maxLength: 255,
    pattern: '^[!-~]+$',
    description: 'Makes a retry safe: send one on every booking. A repeat with the same key and body within 24 hours gets the first response (status and body) and creates nothing; after a 503 (OUTCOME_UNKNOWN included) it gets the booking if the first was stored, and books if it was not. The same key with another body is 422; while the first request with the key is still running, 409 IDEMPOTENCY_KEY_IN_USE.',
    examples: ['3f1c2a9e-booking-J-1042']
  }))
})

/** JSON with object keys sorted, so that the same body spelled in another order is the same request. */
function canonical (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

function hashBody (body: unknown): string {
  return createHash('sha256').update(canonical(body)).digest('hex')
}

function addToSchema (route: RouteOptions): void {
  const schema = route.schema ?? {}
  const response = (schema.response ?? {}) as Record<number, TSchema>
  const errors = errorResponses({ 409: ['IDEMPOTENCY_KEY_IN_USE'], 422: ['IDEMPOTENCY_KEY_REUSED'] })
  route.schema = {
    ...schema,
    headers: schema.headers ?? IdempotencyHeaders,
    // A route's own 409 is kept (allocations list their conflicts), with this code added.
    response: mergeErrorResponses(response, errors)
  }
}

/**
 * How long a request waits for another one holding the same key (running it now) to
 * finish, before it is told 409 IDEMPOTENCY_KEY_IN_USE. A booking holds its key for
 * milliseconds; a long series, for longer.
 */
const KEY_WAIT_MS = 2000

/**
 * Idempotency-Key for every route marked `config: { idempotent: true }`. After
 * validation the key is claimed in PostgreSQL, in a transaction that the handler then
 * writes in (`request.db`) and that stores the response and commits as the response is
 * sent: the change and the response that replays it are committed together or not at
 * all. So a retry with the same key gets the first response if it was committed, and runs
 * the request afresh if it was not, at once, whatever interrupted the first (a failover
 * that ended its session, the process dying): there is never a claim to wait out. A
 * refusal (4xx) changes nothing: its transaction is rolled back and the response stored
 * on its own. Errors from 500 up are not stored, so a retry runs again.
 */
export const idempotency = fp(async function idempotency (app: FastifyInstance) {
  const pool = app.pg.pool
  const held = new WeakMap<FastifyRequest, HeldKey>()
  app.decorateRequest('db', { getter (this: FastifyRequest) { return held.get(this)?.client ?? pool } })

  app.addHook('onRoute', (route) => {
    if (route.config?.idempotent) addToSchema(route)
  })

  app.addHook('preHandler', async (request: FastifyRequest, reply: FastifyReply) => {
    const key = request.headers[IDEMPOTENCY_HEADER]
    if (!request.routeOptions.config.idempotent || typeof key !== 'string') return
    const claim: KeyClaim = { account: actorOf(request).id, key, method: request.method, path: request.url.split('?')[0]!, claim: randomUUID() }
    const hash = hashBody(request.body)
    const client = await pool.connect().catch((error: unknown) => { throw nothingCommitted(error) })
    let stored: StoredKey | undefined
    try {
      await client.query('BEGIN')
      await client.query(`SET LOCAL lock_timeout = ${KEY_WAIT_MS}`)
      await purgeExpiredKeys(client)
      // A key that expires between the claim and the look-up is simply claimed again.
      for (let attempt = 1; attempt <= 3 && !stored; attempt++) {
        if (await claimKey(client, claim, hash)) {
          held.set(request, { claim, hash, client })
          return
        }
        stored = await findKey(client, claim)
      }
    } catch (error) {
      await end(client, error)
      if ((error as { code?: string }).code === '55P03') throw inUse(reply)
      throw nothingCommitted(error)
    }
    await end(client)
    if (!stored) throw new HttpError('IDEMPOTENCY_KEY_IN_USE', 'the Idempotency-Key could not be claimed; retry shortly')
    if (stored.request_hash !== hash) {
      throw new HttpError('IDEMPOTENCY_KEY_REUSED', `the Idempotency-Key was already used with a different body for ${claim.method} ${claim.path}; use a new key`)
    }
    if (stored.status_code === null || stored.body === null) throw inUse(reply)
    if (stored.location !== null) reply.header('Location', stored.location)
    return reply.code(stored.status_code).header('Idempotent-Replayed', 'true')
      .header('Content-Type', 'application/json; charset=utf-8').send(stored.body)
  })

  // Whatever failed while the key's transaction was open is rolled back with it.
  app.addHook('onError', async (request: FastifyRequest, _reply: FastifyReply, error: Error) => {
    if (held.has(request)) nothingCommitted(error)
  })

  app.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    const key = held.get(request)
    if (!key) return payload
    held.delete(request)
    const { claim, hash, client } = key
    const location = reply.getHeader('location')
    if (reply.statusCode >= 400 || typeof payload !== 'string') {
      await end(client)
      if (reply.statusCode >= 500 || typeof payload !== 'string') return payload
      // The refusal is replayed like a success; storing it is only a convenience to the
      // client (a retry that runs again is refused again), so a failure is only logged.
      await storeKey(pool, claim, hash, reply.statusCode, typeof location === 'string' ? location : null, payload)
        .catch((error: Error) => request.log.warn({ err: error, idempotencyKey: claim.key }, 'could not store the Idempotency-Key response of a refusal'))
      return payload
    }
    try {
      await completeKey(client, claim, reply.statusCode, typeof location === 'string' ? location : null, payload)
    } catch (error) {
      // Not committed: the change is rolled back with the claim.
      await end(client, error)
      request.log.error({ err: error, idempotencyKey: claim.key }, 'could not store the Idempotency-Key response; nothing was committed')
      return errorInstead(reply, writeFailure(nothingCommitted(error)))
    }
    try {
      await client.query('COMMIT')
    } catch (error) {
      client.release(error as Error)
      // Perhaps committed (its answer lost in a failover), perhaps not: the client hears
      // OUTCOME_UNKNOWN, and the retry with this key it is told to make finds out which.
      request.log.error({ err: error, idempotencyKey: claim.key }, 'the COMMIT of an Idempotency-Key request failed')
      return errorInstead(reply, writeFailure(error))
    }
    client.release()
    return payload
  })

  // A request that never reached onSend (its connection went first) must not keep its key's connection.
  app.addHook('onResponse', async (request: FastifyRequest) => {
    const key = held.get(request)
    if (!key) return
    held.delete(request)
    await end(key.client)
  })
}, { name: 'invsys-idempotency', dependencies: ['invsys-database', 'invsys-auth'] })

/** Rolls back and returns the connection to the pool; one that cannot roll back is dropped. */
async function end (client: pg.PoolClient, failure?: unknown): Promise<void> {
  let broken: Error | undefined
  await client.query('ROLLBACK').catch((error: Error) => { broken = error })
  // A connection that failed for a reason other than SQL (lost, timed out) is not trusted again.
  const sqlError = typeof (failure as { code?: unknown } | undefined)?.code === 'string'
  client.release(broken ?? (failure !== undefined && !sqlError ? failure as Error : undefined))
}

function inUse (reply: FastifyReply): HttpError {
  reply.header('Retry-After', '1')
  return new HttpError('IDEMPOTENCY_KEY_IN_USE', 'a request with this Idempotency-Key is still running; retry shortly to get its response')
}
