import t from 'tap'
import { generateToken } from '../src/tokens.js'
import { bearer, buildTestApp, call, createAccount } from './helpers.js'

// Everything the app logs, at the most verbose level, as it would reach stdout.
const lines: string[] = []
const app = await buildTestApp(t, { logLevel: 'trace', logStream: { write: (line) => { lines.push(line) } }, ownCluster: true })

t.test('no token ever reaches the logs, whatever the request does', async (t) => {
  const member = await createAccount(app, 'member')
  const created = await call(app, 'POST', `/api/accounts/${member.id}/tokens`, { label: 'logged?' }, { token: member.token })
  const revoked = created.json().token as string
  await call(app, 'DELETE', `/api/tokens/${created.json().id}`, undefined, { token: member.token })
  const unknown = generateToken()
  const secrets = [app.adminToken, member.token, revoked, unknown, 'invsys_not_a_valid_one_but_secret_anyway!']

  const before = lines.length
  await call(app, 'GET', '/api/me')
  await call(app, 'GET', '/api/sites?limit=1', undefined, { token: member.token })
  await call(app, 'POST', '/api/sites', { name: 'x' }, { token: member.token }) // 403
  await call(app, 'POST', '/api/sites', { name: 42 }) // 400
  await call(app, 'GET', '/api/sites/999999') // 404
  await call(app, 'GET', '/api/me', undefined, { token: revoked }) // 401
  await call(app, 'GET', '/api/me', undefined, { token: unknown }) // 401
  await app.inject({ method: 'GET', url: '/api/me', headers: { authorization: `Bearer ${secrets[4]}` } }) // 401, malformed
  await app.inject({ method: 'GET', url: '/api/me', headers: { authorization: `Token ${app.adminToken}` } }) // 401, wrong scheme
  await app.inject({ method: 'GET', url: '/health', headers: bearer(app.adminToken) }) // public route, token ignored
  t.ok(lines.length - before >= 10, `the requests were logged (${lines.length - before} lines)`)
  t.ok(lines.some((l) => l.includes('request refused') && l.includes('INVALID_TOKEN')), 'refusals are logged, by code')

  // Last: with the database gone, errors are logged at error level with the cause.
  await app.stopDatabase()
  t.equal((await call(app, 'GET', '/api/me')).statusCode, 503)
  t.ok(lines.some((l) => l.includes('"level":50')), 'an error was logged')

  const log = lines.join('')
  for (const secret of secrets) {
    t.notOk(log.includes(secret), `${secret.slice(0, 11)}…: not in the logs`)
    t.notOk(log.includes(secret.slice(7)), `${secret.slice(0, 11)}…: not even its random part`)
  }
})

t.test('a log line that carries the Authorization header has it redacted', async (t) => {
  const secret = generateToken()
  app.log.info({ headers: { authorization: `Bearer ${secret}`, host: 'example' } }, 'a careless line')
  app.log.info({ request: { headers: { authorization: `Bearer ${secret}` } } }, 'another careless line')
  app.log.error({ err: Object.assign(new Error('upstream said no'), { headers: { authorization: `Bearer ${secret}` } }) }, 'a careless error line')
  const careless = lines.filter((l) => l.includes('careless'))
  t.equal(careless.length, 3)
  t.ok(careless.every((l) => l.includes('[redacted]') && !l.includes(secret)))
  t.ok(careless[0]!.includes('"host":"example"'), 'only the credential is hidden')
})
