import pg from 'pg'
import t from 'tap'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { poolOptions } from '../src/database/db.js'
import { Listener } from '../src/plugins/notifications.js'
import { TokenCache } from '../src/plugins/token-cache.js'
import { hashToken } from '../src/tokens.js'
import { buildTestApp, call, createAccount, endSessions, sql } from './helpers.js'

// Two replicas of the API on one database, as in production: each keeps the token
// lookups it made, and each must still refuse a token revoked through the other.
const a = await buildTestApp(t)
// Test apps do not shed load (a busy machine must not turn requests into 503s).
const quiet = { LOG_LEVEL: 'silent', MAX_EVENT_LOOP_DELAY_MS: '0' }
const b = await buildApp({ ...loadConfig(quiet), databaseUrl: a.databaseUrl })
t.teardown(() => b.close())

const me = (app: typeof a | typeof b, token: string) => call(app, 'GET', '/api/me', undefined, { token })

async function until (what: string, condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition(); waited += 20) {
    if (waited > 10_000) throw new Error(`still not ${what} after 10 s`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

t.test('a token revoked through one replica is refused by the other on the very next request', async (t) => {
  const account = await createAccount(a, 'member')
  t.equal((await me(b, account.token)).statusCode, 200)
  t.equal((await me(b, account.token)).statusCode, 200, 'served from what replica b keeps')
  t.ok(b.tokenCache!.size > 0, 'replica b keeps the lookup')
  t.equal((await call(a, 'DELETE', `/api/tokens/${account.tokenId}`)).statusCode, 204, 'revoked through replica a')
  t.equal((await me(b, account.token)).statusCode, 401, 'replica b refuses it at once')
  t.equal((await me(a, account.token)).statusCode, 401, 'and so does replica a')
})

t.test('a revocation whose notice is still on its way is waited for, not missed', async (t) => {
  const account = await createAccount(a, 'member')
  await me(b, account.token)
  t.equal((await me(b, account.token)).statusCode, 200)
  t.ok(b.tokenCache!.size > 0)
  // Replica b stops reading its listening connection, as a busy or distant replica may
  // be slow to: the notice of the revocation waits, unread, in its socket.
  const listener = (b.notifications as unknown as { client: { connection: { stream: { pause: () => void, resume: () => void } } } }).client
  listener.connection.stream.pause()
  t.equal((await call(a, 'DELETE', `/api/tokens/${account.tokenId}`)).statusCode, 204)
  const next = me(b, account.token)
  setTimeout(() => listener.connection.stream.resume(), 200)
  t.equal((await next).statusCode, 401, 'the next request on replica b waits to hear it, and is refused')
})

t.test('changes made in psql reach every replica too: revocation, a role, a deleted token', async (t) => {
  const account = await createAccount(a, 'admin')
  const other = await createAccount(a, 'member')
  for (const app of [a, b]) t.equal((await call(app, 'GET', '/api/accounts', undefined, { token: account.token })).statusCode, 200)
  await sql(a, 'UPDATE account SET role = \'member\' WHERE id = $1', [account.id])
  for (const app of [a, b]) t.equal((await call(app, 'GET', '/api/accounts', undefined, { token: account.token })).statusCode, 403, 'no longer an admin')
  t.equal((await me(b, other.token)).statusCode, 200)
  await sql(a, 'UPDATE api_token SET revoked_at = now() WHERE id = $1', [other.tokenId])
  t.equal((await me(b, other.token)).statusCode, 401, 'revoked by hand')
  const third = await createAccount(a, 'member')
  t.equal((await me(b, third.token)).statusCode, 200)
  await sql(a, 'DELETE FROM api_token WHERE id = $1', [third.tokenId])
  t.equal((await me(b, third.token)).statusCode, 401, 'deleted by hand')
})

t.test('while a replica cannot listen for changes it keeps nothing and asks the database every time', async (t) => {
  const account = await createAccount(a, 'member')
  t.equal((await me(b, account.token)).statusCode, 200)
  t.equal(await endSessions(a, 'invsys-api-listener'), 2, 'one listening connection per replica')
  // Revoked at once, before the replicas can have noticed that they stopped listening.
  await sql(a, 'UPDATE api_token SET revoked_at = now() WHERE id = $1', [account.tokenId])
  t.equal((await me(b, account.token)).statusCode, 401, 'refused although nobody heard of it')
  await until('listening again', () => b.tokenCache!.trusted && a.tokenCache!.trusted)
  const fresh = await createAccount(a, 'member')
  t.equal((await me(b, fresh.token)).statusCode, 200)
  t.ok(b.tokenCache!.size > 0, 'keeping lookups again once it listens')
  await call(a, 'DELETE', `/api/tokens/${fresh.tokenId}`)
  t.equal((await me(b, fresh.token)).statusCode, 401)
})

t.test('AUTH_CACHE_SIZE=0: no cache, the same answers', async (t) => {
  const plain = await buildApp({ ...loadConfig({ ...quiet, AUTH_CACHE_SIZE: '0' }), databaseUrl: a.databaseUrl })
  t.teardown(() => plain.close())
  t.equal(plain.tokenCache, undefined)
  const account = await createAccount(a, 'member')
  t.equal((await me(plain, account.token)).statusCode, 200)
  await call(a, 'DELETE', `/api/tokens/${account.tokenId}`)
  t.equal((await me(plain, account.token)).statusCode, 401)
})

t.test('a token used again only stamps last_used_at, which tells no replica to drop it', async (t) => {
  const account = await createAccount(a, 'member')
  const session = new pg.Client({ connectionString: a.databaseUrl })
  session.on('error', () => undefined)
  await session.connect()
  t.teardown(() => session.end())
  const heard: string[] = []
  session.on('notification', (message) => heard.push(message.payload ?? ''))
  await session.query('LISTEN invsys_credentials')
  await sql(a, 'UPDATE api_token SET last_used_at = now() - interval \'1 hour\' WHERE id = $1', [account.tokenId])
  await session.query('SELECT 1')
  t.same(heard, [], 'no notice for last_used_at alone')
  t.equal((await me(b, account.token)).statusCode, 200, 'looked up, and stamped')
  const [row] = await sql<{ stamped: boolean }>(a, 'SELECT last_used_at > now() - interval \'1 minute\' AS stamped FROM api_token WHERE id = $1', [account.tokenId])
  t.ok(row?.stamped, 'last_used_at was written')
  await session.query('SELECT 1')
  t.same(heard, [], 'still no notice')
  const before = { ...b.tokenCache!.lookups }
  t.equal((await me(b, account.token)).statusCode, 200)
  t.equal(b.tokenCache!.lookups.hit, before.hit + 1, 'the next request is answered from what replica b keeps')
  await call(a, 'DELETE', `/api/tokens/${account.tokenId}`)
  await session.query('SELECT 1')
  t.same(heard, [`token ${account.tokenId}`], 'a revocation is heard')
})

t.test('GET /metrics counts hits and misses of the token cache', async (t) => {
  const account = await createAccount(a, 'member')
  const sample = async (result: string) => {
    const text = (await b.inject({ method: 'GET', url: '/metrics' })).body
    const line = text.split('\n').find((l) => l.startsWith(`invsys_auth_cache_lookups_total{result="${result}"} `))
    return Number(line?.split(' ').at(-1))
  }
  const [hits, misses] = [await sample('hit'), await sample('miss')]
  t.equal((await me(b, account.token)).statusCode, 200)
  t.equal((await me(b, account.token)).statusCode, 200)
  t.equal(await sample('miss'), misses + 1, 'the first request asked the database')
  t.equal(await sample('hit'), hits + 1, 'the second did not')
})

t.test('a kept lookup is let go after its time (a minute in the API), so the token is looked up and last_used_at stamped again', async (t) => {
  const listener = new Listener({ connection: poolOptions(a.databaseUrl, 1), log: a.log })
  const cache = new TokenCache({ listener, maxEntries: 10, ttlMs: 50 })
  t.teardown(() => listener.close())
  await listener.start()
  await until('listening', () => cache.trusted)
  const account = await createAccount(a, 'member')
  const tokenHash = hashToken(account.token)
  const known = { account: { id: account.id, name: account.name, role: account.role, created_at: '2030-01-01T00:00:00Z' }, tokenId: account.tokenId, tokenHash }
  cache.remember(tokenHash, known, cache.mark())
  t.match(cache.find(tokenHash), { tokenId: account.tokenId }, 'kept')
  t.ok(await cache.confirm(), 'and confirmed by a round trip on the listener')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(cache.find(tokenHash), undefined, 'gone once its time is up')
})
