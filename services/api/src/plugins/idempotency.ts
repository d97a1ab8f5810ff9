import { createHash, randomUUID } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { Type, type TSchema } from '@sinclair/typebox'
import { actorOf } from './auth.js'
import { claimKey, completeKey, findKey, purgeExpiredKeys, releaseKey, type KeyClaim } from '../database/idempotency.js'
import { HttpError } from './errors.js'
import { errorResponses, mergeErrorResponses } from '../schemas/common.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A creating POST: honours the Idempotency-Key header. */
    idempotent?: boolean
  }
  interface FastifyRequest {
    idempotencyClaim: KeyClaim | null
  }
}

const IDEMPOTENCY_HEADER = 'idempotency-key'

const IdempotencyHeaders = Type.Object({
  [IDEMPOTENCY_HEADER]: Type.Optional(Type.String({
    minLength: 1,
    maxLength: 255,
    pattern: '^[!-~]+$',
    description: 'Makes a retry safe: a repeat with the same key and body within 24 hours gets the first response (status and body) and creates nothing. The same key with another body is 422; while the first request with the key is still running, 409 IDEMPOTENCY_KEY_IN_USE.',
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
 * Idempotency-Key for every route marked `config: { idempotent: true }`. After
 * validation the key is claimed in PostgreSQL (or its stored response replayed); the
 * response is stored as it is sent. Errors from 500 up are not stored: they change
 * nothing (every write is one statement or one transaction), so the key is let go and a
 * retry runs again.
 */
export const idempotency = fp(async function idempotency (app: FastifyInstance) {
  const db = app.pg.pool
  app.decorateRequest('idempotencyClaim', null)

  app.addHook('onRoute', (route) => {
    if (route.config?.idempotent) addToSchema(route)
  })

  app.addHook('preHandler', async (request: FastifyRequest, reply: FastifyReply) => {
    const key = request.headers[IDEMPOTENCY_HEADER]
    if (!request.routeOptions.config.idempotent || typeof key !== 'string') return
    const claim: KeyClaim = { account: actorOf(request).id, key, method: request.method, path: request.url.split('?')[0]!, claim: randomUUID() }
    const hash = hashBody(request.body)
    // A key that expires between the claim and the look-up is simply claimed again.
    for (let attempt = 1; attempt <= 3; attempt++) {
      if (await claimKey(db, claim, hash)) {
        request.idempotencyClaim = claim
        await purgeExpiredKeys(db)
        return
      }
      const stored = await findKey(db, claim)
      if (!stored) continue
      if (stored.request_hash !== hash) {
        throw new HttpError('IDEMPOTENCY_KEY_REUSED', `the Idempotency-Key was already used with a different body for ${claim.method} ${claim.path}; use a new key`)
      }
      if (stored.status_code === null || stored.body === null) {
        reply.header('Retry-After', '1')
        throw new HttpError('IDEMPOTENCY_KEY_IN_USE', 'a request with this Idempotency-Key is still running; retry shortly to get its response')
      }
      if (stored.location !== null) reply.header('Location', stored.location)
      return reply.code(stored.status_code).header('Idempotent-Replayed', 'true')
        .header('Content-Type', 'application/json; charset=utf-8').send(stored.body)
    }
    throw new HttpError('IDEMPOTENCY_KEY_IN_USE', 'the Idempotency-Key could not be claimed; retry shortly')
  })

  app.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    const claim = request.idempotencyClaim
    if (!claim) return payload
    request.idempotencyClaim = null
    try {
      if (reply.statusCode >= 500 || typeof payload !== 'string') {
        await releaseKey(db, claim)
      } else {
        const location = reply.getHeader('location')
        await completeKey(db, claim, reply.statusCode, typeof location === 'string' ? location : null, payload)
      }
    } catch (error) {
      // The client still gets the real response. The key stays claimed, so retries get
      // 409 IDEMPOTENCY_KEY_IN_USE until the claim counts as abandoned.
      request.log.error({ err: error, idempotencyKey: claim.key }, 'could not store the Idempotency-Key response')
    }
    return payload
  })
}, { name: 'invsys-idempotency', dependencies: ['invsys-database', 'invsys-auth'] })
