import type { FastifyInstance, FastifyRequest, FastifySchema, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { TSchema } from '@sinclair/typebox'
import { authenticate } from '../database/accounts.js'
import { nothingCommitted, type Db } from '../database/db.js'
import { ForbiddenError, UnauthorizedError } from './errors.js'
import type { Account } from '../schemas/accounts.js'
import { errorResponses, mergeErrorResponses } from '../schemas/common.js'
import { DEVELOPMENT_ADMIN_TOKEN, hashToken, TOKEN_FORMAT, tokenMatches } from '../tokens.js'
import { TokenCache, type KnownToken } from './token-cache.js'

/**
 * Who may call a route: `member` is any valid token (members and admins), `admin`
 * only admins. Rules about *which* thing (a member's own allocation, its own tokens)
 * are checked where the thing is read, in the route or its SQL.
 */
export type Access = 'admin' | 'member'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Required on every /api route: the auth hook refuses to register one without it. */
    access?: Access
  }
  interface FastifyRequest {
    /** The authenticated account; null only on public routes (and unknown paths). */
    account: Account | null
    /** The id of the token the request came with. */
    tokenId: string | null
  }
  interface FastifyInstance {
    /** "METHOD /url" → access, for every protected route: what the tests check against. */
    routeAccess: ReadonlyMap<string, Access>
    /** Recent token lookups (undefined when AUTH_CACHE_SIZE is 0). */
    tokenCache: TokenCache | undefined
  }
}

/** The OpenAPI security scheme every /api route names. */
export const BEARER_SCHEME = 'bearerAuth'

// RFC 6750 form; the scheme name is case-insensitive (RFC 9110). One token, no spaces in it.
const BEARER = /^Bearer +(\S+) *$/i

const isApiPath = (url: string) => url === '/api' || url.startsWith('/api/')

/**
 * The account behind an Authorization header, or an UnauthorizedError. No message
 * repeats any part of the header: whatever was sent may be a real token.
 */
async function accountFor (db: Db, cache: TokenCache | undefined, header: string | undefined, production: boolean): Promise<KnownToken> {
  if (header === undefined || header === '') {
    throw new UnauthorizedError('this route needs a token: send "Authorization: Bearer <token>"', false)
  }
  const token = BEARER.exec(header)?.[1]
  if (token === undefined || !TOKEN_FORMAT.test(token)) {
    throw new UnauthorizedError('the Authorization header must be "Bearer " followed by an invsys_ token', true)
  }
  // Published in the README, so worthless as a secret: in production it opens nothing,
  // even where a database made on a development machine still holds it.
  if (production && token === DEVELOPMENT_ADMIN_TOKEN) {
    throw new UnauthorizedError('the published development token is refused when NODE_ENV=production', true)
  }
  const tokenHash = hashToken(token)
  // A kept lookup counts only once every change committed before this request has
  // reached the cache (a revocation drops it), and only if it is still there then.
  if (cache) {
    const kept = cache.find(tokenHash)
    if (kept && await cache.confirm() && cache.find(tokenHash) === kept && tokenMatches(token, kept.tokenHash)) {
      cache.counted('hit')
      return kept
    }
    cache.counted('miss')
  }
  const mark = cache?.mark()
  const found = await authenticate(db, tokenHash)
  if (!found || found.revoked || !tokenMatches(token, found.tokenHash)) {
    // Unknown and revoked read alike: a revoked token's holder learns nothing more.
    throw new UnauthorizedError('the token is unknown or has been revoked', true)
  }
  const known = { account: found.account, tokenId: found.tokenId, tokenHash: found.tokenHash }
  if (mark !== undefined) cache?.remember(tokenHash, known, mark)
  return known
}

/**
 * Documents what the hook enforces, so the OpenAPI document cannot drift from it: the
 * bearer scheme and a 401 on every protected route, a 403 on admin routes. A route
 * that can answer 403 for other reasons (someone else's allocation) declares it itself.
 */
function documented (schema: FastifySchema | undefined, access: Access): FastifySchema {
  return {
    ...schema,
    security: [{ [BEARER_SCHEME]: [] }],
    response: mergeErrorResponses(schema?.response as Record<number, TSchema> | undefined,
      errorResponses({ 401: ['UNAUTHENTICATED', 'INVALID_TOKEN'] }, ...(access === 'admin' ? [{ 403: ['FORBIDDEN'] }] : [])))
  }
}

/**
 * Every /api route needs a valid token; /health, /ready and /docs stay public. Each
 * /api route must declare `config: { access }`: one that does not stops the app from
 * booting, so a forgotten declaration can never mean "open to all".
 */
export const auth = fp(async function auth (app: FastifyInstance) {
  const routeAccess = new Map<string, Access>()
  app.decorate('routeAccess', routeAccess)
  const { authCacheSize } = app.config
  // Hears revocations on the replica's listening connection.
  const cache = authCacheSize > 0 ? new TokenCache({ listener: app.notifications, maxEntries: authCacheSize }) : undefined
  app.decorate('tokenCache', cache)
  app.addHook('onClose', async () => { cache?.close() })
  app.decorateRequest('account', null)
  app.decorateRequest('tokenId', null)

  app.addHook('onRoute', (route: RouteOptions) => {
    if (!isApiPath(route.url)) return
    const access = route.config?.access
    if (access !== 'admin' && access !== 'member') {
      throw new Error(`${String(route.method)} ${route.url} declares no access level: add config: { access: 'admin' | 'member' } to the route`)
    }
    for (const method of [route.method].flat()) routeAccess.set(`${method} ${route.url}`, access)
    route.schema = documented(route.schema, access)
  })

  // onRequest: before the body is read or validated, so a caller without a valid token
  // (or the role) learns nothing from 400s, 413s or 404s of the route's own making.
  app.addHook('onRequest', async (request, reply) => {
    const access = request.routeOptions.config.access
    if (access === undefined) return
    // Before the handler: whatever fails here, the request itself has changed nothing yet.
    const { account, tokenId } = await accountFor(app.pg.pool, cache, request.headers.authorization, app.config.production)
      .catch((error: unknown) => { throw nothingCommitted(error) })
    request.account = account
    request.tokenId = tokenId
    // Every later line about this request names the account: an audit trail in the logs.
    request.log = reply.log = request.log.child({ account: account.id })
    if (access === 'admin' && account.role !== 'admin') {
      throw new ForbiddenError(`${request.method} ${request.routeOptions.url} is for admins only`)
    }
  })
}, { name: 'invsys-auth', dependencies: ['invsys-config', 'invsys-errors', 'invsys-database', 'invsys-notifications'] })

/** The caller's account on a protected route (the hook has set it). */
export function actorOf (request: FastifyRequest): Account {
  if (!request.account) throw new Error(`${request.method} ${request.url}: no account on a route that needs one (is its access declared?)`)
  return request.account
}

/** Admins may act on any account's behalf; members only on their own. */
export function assertSelfOrAdmin (actor: Account, accountId: number, action: string): void {
  if (actor.role !== 'admin' && actor.id !== accountId) {
    throw new ForbiddenError(`only an admin or account ${accountId} itself may ${action}`)
  }
}
