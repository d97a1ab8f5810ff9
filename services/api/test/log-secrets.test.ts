import net from 'node:net'
import t from 'tap'
import { generateToken } from '../src/tokens.js'
import { bearer, buildTestApp, call, createAccount, createResource, listen, sleep } from './helpers.js'
import { eventually, receiver } from './webhook-receiver.js'

/**
 * Every log line of a run at trace level, searched for every token and secret the run
 * used, in every encoding a line could carry it: as sent, percent-encoded, base64, hex,
 * and inside serialised Buffers (Fastify's default client-error handler once logged
 * the raw request, Authorization header included).
 */

const lines: string[] = []
const app = await buildTestApp(t, { logLevel: 'trace', logStream: { write: (line) => { lines.push(line) } }, ownCluster: true, env: { WEBHOOK_ALLOWED_CIDRS: '127.0.0.1/32', WEBHOOK_RETRY_SCHEDULE: '0,0.1' } })
const base = await listen(app)

/** Writes raw bytes to the listening app and waits for it to close the connection. */
async function raw (bytes: string): Promise<string> {
  const { port } = new URL(base)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
    socket.setTimeout(10_000, () => socket.destroy())
    socket.write(bytes)
  })
}

const percentEncodeAll = (text: string) => [...Buffer.from(text)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')

/** Every text a log line holds: the line, its strings percent-decoded, Buffers and base64 runs decoded. */
function readings (line: string): string[] {
  const found = [line]
  const visit = (value: unknown): void => {
    if (typeof value === 'string') {
      try { found.push(decodeURIComponent(value)) } catch { /* not percent-encoded */ }
      for (const run of value.match(/[A-Za-z0-9+/_-]{24,}={0,2}/g) ?? []) {
        found.push(Buffer.from(run, 'base64').toString('latin1'))
      }
    } else if (Array.isArray(value)) {
      if (value.length > 0 && value.every((v) => Number.isInteger(v) && v >= 0 && v < 256)) found.push(Buffer.from(value as number[]).toString('latin1'))
      value.forEach(visit)
    } else if (value !== null && typeof value === 'object') {
      Object.values(value).forEach(visit)
    }
  }
  try { visit(JSON.parse(line)) } catch { /* not JSON: the line itself was searched */ }
  return found
}

t.test('no log line holds a token, a feed secret or a webhook secret, in any encoding, whatever the request', async (t) => {
  const member = await createAccount(app, 'member')
  const created = await call(app, 'POST', `/api/accounts/${member.id}/tokens`, { label: 'to revoke' }, { token: member.token })
  const revoked = created.json().token as string
  await call(app, 'DELETE', `/api/tokens/${created.json().id}`, undefined, { token: member.token })
  const inUrl = generateToken()
  const inQuery = generateToken()
  const encoded = generateToken()
  const inHost = generateToken()
  const inBody = generateToken()
  const feedSecret = 'feedsecret_' + generateToken().slice(7)
  const car = await createResource(app, 'car')

  // Webhook secrets: made, rotated, used to sign deliveries that succeed and fail, echoed back in bodies and URLs.
  const hook = await receiver(t)
  hook.answer = (_request, index) => ({ status: index % 2 === 0 ? 500 : 204 })
  const webhook = await call(app, 'POST', '/api/webhooks', { url: hook.url(), description: 'log test' })
  const webhookSecret = webhook.json().secret as string
  const rotatedSecret = (await call(app, 'POST', `/api/webhooks/${webhook.json().id}/rotate-secret`)).json().secret as string
  await call(app, 'POST', '/api/webhooks', { url: hook.url(`/?secret=${rotatedSecret}`), description: webhookSecret })
  await call(app, 'PATCH', `/api/webhooks/${webhook.json().id}`, { description: rotatedSecret, secret: webhookSecret })
  await call(app, 'GET', `/api/webhooks/${webhook.json().id}/deliveries?secret=${encodeURIComponent(webhookSecret)}`)
  await call(app, 'POST', `/api/resources/${car.id}/allocations`, { starts_at: '2030-02-01T00:00:00Z', ends_at: '2030-02-01T01:00:00Z', description: webhookSecret })
  t.ok(await eventually(() => hook.received.length >= 2), 'deliveries were signed and sent')
  await sleep(300)
  const secrets = [app.adminToken, member.token, revoked, inUrl, inQuery, encoded, inHost, inBody, webhookSecret, rotatedSecret]

  // Through Fastify: every route kind, refusals of every sort.
  await call(app, 'GET', '/api/me')
  await call(app, 'GET', '/api/me', undefined, { token: member.token })
  await call(app, 'GET', '/api/me', undefined, { token: revoked })
  await call(app, 'POST', '/api/sites', { name: 'x' }, { token: member.token })
  await call(app, 'POST', '/api/sites', { name: inBody })
  await call(app, 'POST', `/api/resources/${car.id}/allocations`, { starts_at: '2030-01-01T00:00:00Z', ends_at: '2030-01-01T01:00:00Z', description: inBody, data: { token: inBody } })
  await call(app, 'POST', `/api/resources/${car.id}/allocations`, { starts_at: inBody, ends_at: null })
  await call(app, 'GET', `/api/resources/${inUrl}`)
  await call(app, 'GET', `/api/${inUrl}/x`)
  await call(app, 'GET', `/api/sites?q=${inQuery}`)
  await call(app, 'GET', `/api/sites?${inQuery}=1`)
  await call(app, 'GET', `/api/sites?access_token=${percentEncodeAll(encoded)}`)
  await call(app, 'GET', `/api/${percentEncodeAll(encoded)}`)
  await call(app, 'GET', `/feeds/${feedSecret}.ics`)
  await app.inject({ method: 'GET', url: '/api/sites', headers: { ...bearer(app.adminToken), host: `${inHost}.example`, 'accept-version': inHost } })
  await app.inject({ method: 'GET', url: '/api/sites', headers: { ...bearer(app.adminToken), 'x-request-id': inHost, 'idempotency-key': inHost } })
  await app.inject({ method: 'POST', url: '/api/sites', headers: { ...bearer(app.adminToken), 'idempotency-key': inHost }, payload: { name: 'idem' } })
  await app.inject({ method: 'GET', url: '/api/me', headers: { authorization: `Token ${app.adminToken}` } })
  await app.inject({ method: 'GET', url: '/api/me', headers: { authorization: `Bearer ${app.adminToken} ${member.token}` } })

  // Past Fastify: what Node's HTTP parser refuses, each with the admin's token on it.
  const auth = `Authorization: Bearer ${app.adminToken}\r\n`
  await raw(`GET /api/si\0tes HTTP/1.1\r\nHost: a\r\n${auth}\r\n`)
  await raw(`GET /api/sites HTTP/1.1\r\nHost: a\r\n${auth}X-Big: ${'y'.repeat(17000)}\r\n\r\n`)
  await raw(`GET /api/sites?q=${'x'.repeat(17000)} HTTP/1.1\r\nHost: a\r\n${auth}\r\n`)
  await raw(`GET /api/sites HTTP/1.1\r\nHost: a\r\n${auth}X-Bad\u0001: 1\r\n\r\n`)
  await raw(`POST /api/sites HTTP/1.1\r\nHost: a\r\n${auth}Content-Type: application/json\r\nContent-Length: 5\r\n\r\n{"na`)

  // And with the database gone, when errors are logged with their causes.
  await app.stopDatabase()
  t.equal((await call(app, 'GET', '/api/me')).statusCode, 503)
  await call(app, 'POST', '/api/sites', { name: inBody })

  await new Promise((resolve) => setTimeout(resolve, 200))
  t.ok(lines.length > 30, `the run was logged (${lines.length} lines)`)
  t.ok(lines.some((l) => l.includes('"level":10') || l.includes('"level":20')), 'at trace and debug levels too')
  t.ok(lines.some((l) => l.includes('unreadable request refused')), 'the parser\'s refusals are logged')
  t.ok(lines.some((l) => l.includes('invsys_[redacted]')), 'tokens in URLs are replaced, not dropped silently')

  const forms = (secret: string) => [secret, secret.slice(7), Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('base64url'),
    Buffer.from(secret).toString('hex'), percentEncodeAll(secret)]
  const leaks: string[] = []
  for (const line of lines) {
    const texts = readings(line)
    for (const secret of [...secrets, feedSecret]) {
      for (const form of forms(secret)) {
        if (texts.some((text) => text.includes(form))) leaks.push(`${secret.slice(0, 12)}… as ${form.slice(0, 12)}…: ${line.slice(0, 300)}`)
      }
    }
  }
  t.same(leaks, [], 'no secret in any form in any line')
})
