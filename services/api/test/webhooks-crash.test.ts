import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { Webhook } from 'standardwebhooks'
import { generateToken } from '../src/tokens.js'
import { bearer, freePort, startTestDatabase, untapped } from './helpers.js'
import { eventually, receiver } from './webhook-receiver.js'

/**
 * At least once, across a crash: the API is killed (SIGKILL) while a delivery is in
 * flight, and started again; every event still reaches the receiver, the interrupted one
 * again with its original webhook-id, once the dead process's lease has lapsed.
 */

const SERVER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/server.ts')

interface Running { child: ChildProcess, base: string, exited: Promise<void> }

async function startServer (env: Record<string, string>): Promise<Running> {
  const port = await freePort()
  const child = spawn(...untapped(process.execPath, ['--import', 'tsx', SERVER]), {
    env: { ...process.env, PORT: String(port), LOG_LEVEL: 'warn', MAX_EVENT_LOOP_DELAY_MS: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  const base = `http://127.0.0.1:${port}`
  const ready = await eventually(async () => (await fetch(`${base}/ready`).catch(() => undefined))?.status === 200, 90_000)
  if (!ready) {
    child.kill('SIGKILL')
    throw new Error(`the API did not start:\n${output}`)
  }
  return { child, base, exited }
}

t.test('kill -9 mid-delivery, then a restart: every event arrives at least once, the interrupted one again with its webhook-id', async (t) => {
  const database = await startTestDatabase(t)
  const token = generateToken()
  const env = { DATABASE_URL: database.url, BOOTSTRAP_ADMIN_TOKEN: token, WEBHOOK_ALLOWED_CIDRS: '127.0.0.1/32', WEBHOOK_RETRY_SCHEDULE: '0,1,1,1,1,1,1,1,1,1' }
  const api = (base: string) => (url: string, method = 'GET', body?: unknown) => fetch(`${base}${url}`, {
    method,
    headers: { ...bearer(token), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })

  const hook = await receiver(t)
  // The first delivery is held: the process that sent it dies before any answer.
  hook.answer = (_request, index) => index === 0 ? 'hang' : { status: 200 }
  const first = await startServer(env)
  t.teardown(() => first.child.kill('SIGKILL'))
  const call = api(first.base)
  const { secret, id: endpointId } = await (await call('/api/webhooks', 'POST', { url: hook.url(), types: ['allocation.created'] })).json() as { secret: string, id: string }
  const car = await (await call('/api/resources', 'POST', { type: 'car', name: 'crash-car' })).json() as { id: string }
  for (let n = 0; n < 3; n++) {
    const res = await call(`/api/resources/${car.id}/allocations`, 'POST', { starts_at: `2036-01-0${n + 1}T09:00:00Z`, ends_at: `2036-01-0${n + 1}T10:00:00Z` })
    t.equal(res.status, 201)
  }
  t.ok(await eventually(() => hook.received.length > 0), 'the first delivery is in flight')
  const interrupted = hook.received[0]!.headers['webhook-id']!
  first.child.kill('SIGKILL')
  await first.exited
  hook.dropHeld()
  t.equal(hook.received.length, 1, 'the car\'s later events wait for the first (one resource: in order)')

  const second = await startServer(env)
  t.teardown(() => second.child.kill('SIGKILL'))
  t.ok(await eventually(() => hook.received.filter((r) => r.status === 200).length >= 3, 60_000), 'after the restart, every event is delivered')
  const events = await (await api(second.base)(`/api/events?resource_id=${car.id}&type=allocation.created`)).json() as Array<{ id: string }>
  t.equal(events.length, 3)
  for (const event of events) t.ok(hook.of(event.id).some((r) => r.status === 200), `event ${event.id} acknowledged`)
  const again = hook.of(interrupted)
  t.equal(again.length, 2, 'the interrupted event was sent again')
  t.equal(again[1]!.body, again[0]!.body, 'the same body')
  t.ok(again.every((r) => new Webhook(secret).verify(r.body, r.headers)), 'both signed, each with its own timestamp')
  t.ok(again[1]!.at - again[0]!.at >= 15_000, `once the lease of the killed process lapsed (${Math.round((again[1]!.at - again[0]!.at) / 1000)} s later)`)
  const attempts = await (await api(second.base)(`/api/webhooks/${endpointId}/deliveries`)).json() as unknown[]
  t.equal(attempts.length, 3, 'the attempt that died with its process left no record; the three that succeeded did')
  second.child.kill('SIGTERM')
  await second.exited
})
