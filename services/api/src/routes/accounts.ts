import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { createAccount, createToken, getAccount, getToken, listAccounts, listTokens, revokeToken } from '../database/accounts.js'
import { NotFoundError } from '../plugins/errors.js'
import { actorOf, assertSelfOrAdmin } from '../plugins/auth.js'
import {
  Account, AccountInput, AccountListQuery, AccountParams, ApiToken, Me, NewApiToken, TokenInput, TokenListQuery, TokenParams
} from '../schemas/accounts.js'
import { errorResponses, NoContent, READ_ERRORS, WRITE_ERRORS } from '../schemas/common.js'
import { generateToken, hashToken, tokenDisplayPrefix } from '../tokens.js'
import { sendPage } from './paging.js'

const tags = ['accounts']
const noAccount = (id: number) => new NotFoundError(`no account with id ${id}`)
const noToken = (id: string) => new NotFoundError(`no token with id ${id}`)

/** Accounts (admins create them) and their tokens (an admin, or the account itself). */
export const accountRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.pg.pool

  app.get('/api/me', {
    config: { access: 'member' },
    schema: { tags, summary: 'Who am I: the account and the token this request came with', response: { 200: Me, ...errorResponses(503) } }
  }, async (request) => ({ ...actorOf(request), token_id: request.tokenId! }))

  app.get('/api/accounts', {
    config: { access: 'admin' },
    schema: { tags, summary: 'List accounts, by id', querystring: AccountListQuery, response: { 200: Type.Array(Account), ...errorResponses(...READ_ERRORS) } }
  }, async (request, reply) => {
    const { limit, offset } = request.query
    return sendPage(request, reply, await listAccounts(db, { limit, offset }), { limit, offset })
  })

  app.post('/api/accounts', {
    config: { access: 'admin' },
    schema: {
      tags,
      summary: 'Create an account (it has no token until one is created for it)',
      description: 'role defaults to member. 409 DUPLICATE when the name is taken (ignoring case).',
      body: AccountInput,
      response: { 201: Account, ...errorResponses(...WRITE_ERRORS, { 409: ['DUPLICATE'] }) }
    }
  }, async (request, reply) => {
    const account = await createAccount(db, request.body.name, request.body.role ?? 'member')
    return reply.code(201).header('Location', `/api/accounts/${account.id}`).send(account)
  })

  app.get('/api/accounts/:id', {
    config: { access: 'member' },
    schema: { tags, summary: 'Get an account (an admin, or the account itself)', params: AccountParams, response: { 200: Account, ...errorResponses(...READ_ERRORS, 403, 404) } }
  }, async (request) => {
    assertSelfOrAdmin(actorOf(request), request.params.id, 'read this account')
    return await getAccount(db, request.params.id) ?? Promise.reject(noAccount(request.params.id))
  })

  app.get('/api/accounts/:id/tokens', {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'List the tokens of an account, oldest first (an admin, or the account itself)',
      description: 'Metadata only, revoked tokens included: never a token or its hash.',
      params: AccountParams,
      querystring: TokenListQuery,
      response: { 200: Type.Array(ApiToken), ...errorResponses(...READ_ERRORS, 403, 404) }
    }
  }, async (request, reply) => {
    assertSelfOrAdmin(actorOf(request), request.params.id, 'list its tokens')
    const { limit, offset } = request.query
    const rows = await listTokens(db, request.params.id, { limit, offset })
    if (rows.length === 0 && offset === 0 && !await getAccount(db, request.params.id)) throw noAccount(request.params.id)
    return sendPage(request, reply, rows, { limit, offset })
  })

  app.post('/api/accounts/:id/tokens', {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'Create a token for an account (an admin, or the account itself)',
      description: 'The reply is the only time the token is shown: it is stored as a SHA-256 hash. Send it as "Authorization: Bearer <token>".',
      params: AccountParams,
      body: TokenInput,
      response: { 201: NewApiToken, ...errorResponses(...WRITE_ERRORS, 403, 404) }
    }
  }, async (request, reply) => {
    assertSelfOrAdmin(actorOf(request), request.params.id, 'create tokens for it')
    const token = generateToken()
    const stored = await createToken(db, request.params.id,
      { hash: hashToken(token), prefix: tokenDisplayPrefix(token), label: request.body.label ?? null })
    if (!stored) throw noAccount(request.params.id)
    // no-store: a credential must not stay in a proxy's or browser's cache (RFC 6749 §5.1).
    return reply.code(201).header('Location', `/api/tokens/${stored.id}`).header('Cache-Control', 'no-store')
      .send({ ...stored, token })
  })

  app.get('/api/tokens/:id', {
    config: { access: 'member' },
    schema: { tags, summary: 'Get a token\'s metadata (an admin, or its account)', params: TokenParams, response: { 200: ApiToken, ...errorResponses(...READ_ERRORS, 403, 404) } }
  }, async (request) => {
    const token = await getToken(db, request.params.id)
    if (!token) throw noToken(request.params.id)
    assertSelfOrAdmin(actorOf(request), token.account_id, 'read this token')
    return token
  })

  app.delete('/api/tokens/:id', {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'Revoke a token (an admin, or its account)',
      description: 'Final: the token authenticates nothing from now on; the row stays with revoked_at. Revoking twice is still 204. A request may revoke its own token.',
      params: TokenParams,
      response: { 204: NoContent, ...errorResponses(...READ_ERRORS, 403, 404) }
    }
  }, async (request, reply) => {
    if (!await revokeToken(db, request.params.id, actorOf(request))) throw noToken(request.params.id)
    return reply.code(204).send(null)
  })
}
