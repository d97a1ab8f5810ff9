import { createHash } from 'node:crypto'
import * as crypto from 'node:crypto'
import Fastify from 'fastify'
import t from 'tap'
import { buildApp, invsys } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { generateToken } from '../src/tokens.js'
import { bearer, buildTestApp, call, createAccount, unique } from './helpers.js'

const app = await buildTestApp(t)
const member = await createAccount(app, 'member')
const other = await createAccount(app, 'member')

/** A token that was valid once. */
async function revokedToken (): Promise<string> {
  const account = await createAccount(app, 'member')
  const res = await call(app, 'DELETE', `/api/tokens/${account.tokenId}`)
  if (res.statusCode !== 204) throw new Error(res.body)
  return account.token
}

const ERROR_KEYS = ['code', 'error', 'hint', 'message', 'statusCode']

t.test('no token, a malformed one, an unknown one or a revoked one: 401 with a Bearer challenge', async (t) => {
  const revoked = await revokedToken()
  const cases: Array<{ name: string, authorization?: string, code: string, invalidToken: boolean }> = [
    { name: 'no Authorization header', code: 'UNAUTHENTICATED', invalidToken: false },
    { name: 'empty header', authorization: '', code: 'UNAUTHENTICATED', invalidToken: false },
    { name: 'Basic credentials', authorization: 'Basic YWRtaW46YWRtaW4=', code: 'INVALID_TOKEN', invalidToken: true },
    { name: 'Bearer and nothing', authorization: 'Bearer', code: 'INVALID_TOKEN', invalidToken: true },
    { name: 'Bearer and a space', authorization: 'Bearer ', code: 'INVALID_TOKEN', invalidToken: true },
    { name: 'not an invsys token', authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc', code: 'INVALID_TOKEN', invalidToken: true },
    { name: 'too short', authorization: 'Bearer invsys_short', code: 'INVALID_TOKEN', invalidToken: true },
    { name: 'a character outside base64url', authorization: `Bearer ${app.adminToken.slice(0, -1)}!`, code: 'INVALID_TOKEN', invalidToken: true },
    { name: 'two tokens', authorization: `Bearer ${app.adminToken} ${app.adminToken}`, code: 'INVALID_TOKEN', invalidToken: true },
    { name: 'the token without the scheme', authorization: app.adminToken, code: 'INVALID_TOKEN', invalidToken: true },
    { name: 'unknown token', authorization: `Bearer ${generateToken()}`, code: 'INVALID_TOKEN', invalidToken: true },
    { name: 'the admin token with one character changed', authorization: `Bearer ${app.adminToken.slice(0, -1)}${app.adminToken.endsWith('A') ? 'B' : 'A'}`, code: 'INVALID_TOKEN', invalidToken: true },
    { name: 'revoked token', authorization: `Bearer ${revoked}`, code: 'INVALID_TOKEN', invalidToken: true }
  ]
  for (const c of cases) {
    const res = await app.inject({ method: 'GET', url: '/api/sites', headers: c.authorization === undefined ? {} : { authorization: c.authorization } })
    t.equal(res.statusCode, 401, `${c.name}: 401`)
    t.same(Object.keys(res.json()).sort(), ERROR_KEYS, `${c.name}: the error body`)
    t.match(res.json(), { statusCode: 401, code: c.code, error: 'Unauthorized' }, `${c.name}: code`)
    t.equal(res.headers['www-authenticate'], c.invalidToken ? 'Bearer realm="invsys", error="invalid_token"' : 'Bearer realm="invsys"', `${c.name}: challenge`)
    const sent = c.authorization?.replace(/^\S+ ?/, '') ?? ''
    if (sent.length > 8) t.notOk(res.body.includes(sent), `${c.name}: the reply does not repeat what was sent`)
  }
  const unknown = await app.inject({ method: 'GET', url: '/api/sites', headers: bearer(generateToken()) })
  const stale = await app.inject({ method: 'GET', url: '/api/sites', headers: bearer(revoked) })
  t.same(stale.json(), unknown.json(), 'revoked and unknown tokens cannot be told apart')
})

t.test('the scheme name is case-insensitive; the token is not', async (t) => {
  t.equal((await app.inject({ method: 'GET', url: '/api/me', headers: { authorization: `bearer ${app.adminToken}` } })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/api/me', headers: { authorization: `BEARER  ${app.adminToken}` } })).statusCode, 200)
  const swapped = app.adminToken.replace(/[a-z]/, (c) => c.toUpperCase())
  if (swapped !== app.adminToken) t.equal((await app.inject({ method: 'GET', url: '/api/me', headers: bearer(swapped) })).statusCode, 401)
})

t.test('a caller without a valid token learns nothing about the route beyond 401', async (t) => {
  const none = await app.inject({ method: 'POST', url: '/api/sites', headers: { 'content-type': 'application/json' }, payload: '{"name": ' })
  t.equal(none.statusCode, 401, 'invalid JSON: 401, not 400')
  const huge = await app.inject({ method: 'POST', url: '/api/sites', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ name: 'x'.repeat(2_000_000) }) })
  t.equal(huge.statusCode, 401, 'a body over the limit: 401, not 413')
  const missing = await call(app, 'GET', '/api/sites/999999', undefined, { token: null })
  t.equal(missing.statusCode, 401, 'a missing thing: 401, not 404')
  const asMember = await call(app, 'POST', '/api/sites', { nonsense: true }, { token: member.token })
  t.equal(asMember.statusCode, 403, 'a member on an admin route with a bad body: 403, not 400')
  t.equal((await call(app, 'HEAD', '/api/sites', undefined, { token: null })).statusCode, 401, 'HEAD routes are protected like GET')
  t.equal((await call(app, 'HEAD', '/api/sites')).statusCode, 200)
})

t.test('/health, /ready and /docs stay public; unknown paths are 404 for anyone', async (t) => {
  for (const url of ['/health', '/ready', '/docs/json']) {
    t.equal((await call(app, 'GET', url, undefined, { token: null })).statusCode, 200, url)
  }
  t.ok([200, 302].includes((await call(app, 'GET', '/docs', undefined, { token: null })).statusCode), '/docs')
  t.equal((await call(app, 'GET', '/health', undefined, { token: 'invsys_garbage' })).statusCode, 200, 'a bad token does not spoil a public route')
  // The OpenAPI document lists every route anyway, so a 404 reveals nothing; a 401
  // here would only make typos harder to see.
  const missing = await call(app, 'GET', '/api/boats', undefined, { token: null })
  t.equal(missing.statusCode, 404)
  t.match(missing.json(), { code: 'NOT_FOUND' })
})

t.test('GET /api/me: the caller and the token it used', async (t) => {
  const admin = await call(app, 'GET', '/api/me')
  t.equal(admin.statusCode, 200)
  t.match(admin.json(), { name: 'admin', role: 'admin', id: Number, token_id: /^[0-9a-f-]{36}$/ })
  const me = (await call(app, 'GET', '/api/me', undefined, { token: member.token })).json()
  t.same(me, { id: member.id, name: member.name, role: 'member', created_at: me.created_at, token_id: member.tokenId })
})

t.test('accounts: admins create and list them; names are unique ignoring case; no mass assignment', async (t) => {
  const name = unique('Dana')
  const created = await call(app, 'POST', '/api/accounts', { name })
  t.equal(created.statusCode, 201)
  t.match(created.json(), { name, role: 'member', created_at: /Z$/ }, 'role defaults to member')
  t.equal(created.headers.location, `/api/accounts/${created.json().id}`)
  t.same((await call(app, 'GET', created.headers.location as string)).json(), created.json())
  const duplicate = await call(app, 'POST', '/api/accounts', { name: name.toUpperCase() })
  t.equal(duplicate.statusCode, 409)
  t.match(duplicate.json(), { code: 'DUPLICATE', message: /name is already used by another account/ })
  const bad = await call(app, 'POST', '/api/accounts', { name: 'no spaces please' })
  t.equal(bad.statusCode, 400)
  t.match(bad.json(), { code: 'CONSTRAINT_VIOLATION', message: /^name must start with a letter or digit/ })
  t.equal((await call(app, 'POST', '/api/accounts', { name: unique('x'), role: 'superuser' })).statusCode, 400, 'unknown role')
  const smuggled = await call(app, 'POST', '/api/accounts', { name: unique('x'), id: 1 })
  t.equal(smuggled.statusCode, 400)
  t.match(smuggled.json().message, /body\/id is not an accepted property/)
  const list = await call(app, 'GET', '/api/accounts?limit=2')
  t.equal(list.statusCode, 200)
  t.equal(list.json()[0].name, 'admin', 'by id: the bootstrap admin first')
  t.match(list.headers.link, /offset=2/, 'paged')
  t.equal((await call(app, 'GET', '/api/accounts/999999')).statusCode, 404)
  t.equal((await call(app, 'GET', `/api/accounts/${other.id}`, undefined, { token: member.token })).statusCode, 403, 'a member may not read another account')
  t.equal((await call(app, 'GET', `/api/accounts/${member.id}`, undefined, { token: member.token })).statusCode, 200, 'but may read its own')
})

t.test('tokens: shown once, stored as a hash, listed without secrets', async (t) => {
  const res = await call(app, 'POST', `/api/accounts/${member.id}/tokens`, { label: 'laptop' }, { token: member.token })
  t.equal(res.statusCode, 201, 'a member creates a token for itself')
  t.equal(res.headers['cache-control'], 'no-store')
  const created = res.json()
  t.match(created.token, /^invsys_[A-Za-z0-9_-]{43}$/)
  t.equal(created.prefix, created.token.slice(0, 11))
  t.match(created, { account_id: member.id, label: 'laptop', last_used_at: null, revoked_at: null })
  t.equal(res.headers.location, `/api/tokens/${created.id}`)

  const { rows } = await app.pg.pool.query('SELECT * FROM api_token WHERE id = $1', [created.id])
  t.same(rows[0].token_hash, createHash('sha256').update(created.token).digest(), 'the database holds the SHA-256 of the token')
  t.notOk(JSON.stringify(rows[0]).includes(created.token.slice(7)), 'and nothing else of it')

  const views = [
    await call(app, 'GET', `/api/tokens/${created.id}`, undefined, { token: member.token }),
    await call(app, 'GET', `/api/accounts/${member.id}/tokens`, undefined, { token: member.token }),
    await call(app, 'GET', `/api/accounts/${member.id}/tokens`),
    await call(app, 'GET', '/api/me', undefined, { token: created.token })
  ]
  for (const view of views) {
    t.equal(view.statusCode, 200)
    t.notOk(view.body.includes(created.token.slice(7)), 'never returned again')
    t.notOk(view.body.includes('token_hash'), 'nor its hash')
  }
  t.same(Object.keys(views[0]!.json()).sort(), ['account_id', 'created_at', 'id', 'label', 'last_used_at', 'prefix', 'revoked_at'])
  t.same(views[1]!.json().map((tk: { id: string }) => tk.id), [member.tokenId, created.id], 'listed oldest first')
  t.equal(views[3]!.json().token_id, created.id, 'the new token works')

  t.equal((await call(app, 'POST', `/api/accounts/${other.id}/tokens`, {}, { token: member.token })).statusCode, 403, 'not for another account')
  t.equal((await call(app, 'GET', `/api/accounts/${other.id}/tokens`, undefined, { token: member.token })).statusCode, 403)
  t.equal((await call(app, 'GET', `/api/tokens/${other.tokenId}`, undefined, { token: member.token })).statusCode, 403)
  t.equal((await call(app, 'POST', '/api/accounts/999999/tokens', {})).statusCode, 404, 'admin, no such account')
  t.equal((await call(app, 'GET', '/api/accounts/999999/tokens')).statusCode, 404)
  const smuggled = await call(app, 'POST', `/api/accounts/${member.id}/tokens`, { account_id: other.id }, { token: member.token })
  t.equal(smuggled.statusCode, 400, 'no body field chooses the account')
  t.equal((await call(app, 'POST', `/api/accounts/${member.id}/tokens`, { role: 'admin' }, { token: member.token })).statusCode, 400, 'or a role')
})

t.test('revocation: final, idempotent, by the owner or an admin', async (t) => {
  const account = await createAccount(app, 'member')
  const second = (await call(app, 'POST', `/api/accounts/${account.id}/tokens`, {})).json()
  t.equal((await call(app, 'DELETE', `/api/tokens/${second.id}`, undefined, { token: member.token })).statusCode, 403, 'not another member')
  t.equal((await call(app, 'GET', '/api/me', undefined, { token: second.token })).statusCode, 200, 'which changed nothing')
  t.equal((await call(app, 'DELETE', `/api/tokens/${second.id}`, undefined, { token: account.token })).statusCode, 204, 'its owner may')
  t.equal((await call(app, 'GET', '/api/me', undefined, { token: second.token })).statusCode, 401, 'it no longer works')
  const revokedAt = (await call(app, 'GET', `/api/tokens/${second.id}`)).json().revoked_at
  t.match(revokedAt, /Z$/)
  t.equal((await call(app, 'DELETE', `/api/tokens/${second.id}`)).statusCode, 204, 'revoking twice is 204')
  t.equal((await call(app, 'GET', `/api/tokens/${second.id}`)).json().revoked_at, revokedAt, 'and keeps the first time')
  t.equal((await call(app, 'GET', '/api/me', undefined, { token: account.token })).statusCode, 200, 'the other token of the account still works')
  t.equal((await call(app, 'DELETE', `/api/tokens/${account.tokenId}`, undefined, { token: account.token })).statusCode, 204, 'a token may revoke itself')
  t.equal((await call(app, 'GET', '/api/me', undefined, { token: account.token })).statusCode, 401)
  t.equal((await call(app, 'DELETE', '/api/tokens/00000000-0000-4000-8000-000000000000')).statusCode, 404)
})

t.test('last_used_at is written at most once a minute', async (t) => {
  // The lookup's own rule, so without the token cache: it keeps a lookup for that same
  // minute, a clock this test cannot move (token-cache.test.ts checks it lets go then).
  const plain = await buildApp({ ...loadConfig({ LOG_LEVEL: 'silent', MAX_EVENT_LOOP_DELAY_MS: '0', AUTH_CACHE_SIZE: '0' }), databaseUrl: app.databaseUrl })
  t.teardown(() => plain.close())
  const account = await createAccount(app, 'member')
  const lastUsed = async () => (await app.pg.pool.query('SELECT last_used_at FROM api_token WHERE id = $1', [account.tokenId])).rows[0].last_used_at
  t.equal(await lastUsed(), null, 'never used')
  await call(plain, 'GET', '/api/me', undefined, { token: account.token })
  const first = await lastUsed()
  t.ok(first, 'stamped on first use')
  await call(plain, 'GET', '/api/me', undefined, { token: account.token })
  t.equal(await lastUsed(), first, 'not again within the minute')
  await app.pg.pool.query("UPDATE api_token SET last_used_at = now() - interval '61 seconds' WHERE id = $1", [account.tokenId])
  const aged = await lastUsed()
  await call(plain, 'GET', '/api/me', undefined, { token: account.token })
  t.ok(await lastUsed() > aged, 'stamped again a minute later')
})

t.test('tokens are compared with crypto.timingSafeEqual', async (t) => {
  let compared = 0
  const tokens = await t.mockImport<typeof import('../src/tokens.js')>('../src/tokens.js', {
    'node:crypto': { ...crypto, timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => { compared++; return crypto.timingSafeEqual(a, b) } }
  })
  const token = tokens.generateToken()
  t.ok(tokens.tokenMatches(token, tokens.hashToken(token)), 'the right token matches')
  t.notOk(tokens.tokenMatches(generateToken(), tokens.hashToken(token)), 'another does not')
  t.notOk(tokens.tokenMatches(token, Buffer.alloc(3)), 'a stored value of another length does not (and does not throw)')
  t.equal(compared, 2, 'both same-length comparisons went through timingSafeEqual')
})

t.test('an /api route that declares no access level stops the app from booting', async (t) => {
  const config = { ...loadConfig({ LOG_LEVEL: 'silent' }), databaseUrl: app.databaseUrl }
  const broken = Fastify({ logger: false })
  await broken.register(invsys, { config })
  broken.register(async (child) => {
    child.get('/api/forgotten', async () => ({ open: 'to all?' }))
  })
  await t.rejects(async () => { await broken.ready() }, /GET \/api\/forgotten declares no access level/)
  await broken.close().catch(() => undefined)
})
