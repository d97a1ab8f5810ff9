import t from 'tap'
import { book, buildTestApp, call, createResource } from './helpers.js'

const app = await buildTestApp(t)

/** The value of one sample line of the Prometheus text format, or undefined. */
function sample (text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)))
  return line === undefined ? undefined : Number(line.split(' ').at(-1))
}

t.test('GET /metrics: requests by route pattern and status, conflicts, the pool, without a token', async (t) => {
  const car = await createResource(app, 'car')
  t.equal((await book(app, car.id, '2031-01-01T10:00:00Z', '2031-01-01T11:00:00Z')).statusCode, 201)
  t.equal((await book(app, car.id, '2031-01-01T10:30:00Z', '2031-01-01T11:30:00Z')).statusCode, 409)
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(res.statusCode, 200, 'public, like /health (nginx does not route it)')
  t.match(res.headers['content-type'], /^text\/plain/)
  const text = res.body
  const route = '{method="POST",route="/api/resources/:id/allocations",status="201"}'
  t.equal(sample(text, 'invsys_http_requests_total', route), 1, 'counted by route pattern, not by URL')
  t.equal(sample(text, 'invsys_http_requests_total', route.replace('201', '409')), 1)
  t.ok(sample(text, 'invsys_http_request_duration_seconds_count', route)! >= 1, 'latency histogram')
  t.equal(sample(text, 'invsys_booking_conflicts_total'), 1, 'the refused booking')
  t.equal(sample(text, 'invsys_error_responses_total', '{code="ALLOCATION_CONFLICT"}'), 1)
  t.ok(sample(text, 'invsys_db_pool_connections', '{state="max"}')! >= 1, 'pool size')
  t.ok(sample(text, 'invsys_db_pool_connections', '{state="total"}')! >= 1, 'connections held')
  t.match(text, /invsys_nodejs_eventloop_lag_seconds/, "Node's own metrics")
  t.notMatch(text, car.id, 'no ids in label values')
  const unauthenticated = await call(app, 'GET', '/api/me', undefined, { token: null })
  t.equal(unauthenticated.statusCode, 401)
  const after = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.equal(sample(after, 'invsys_error_responses_total', '{code="UNAUTHENTICATED"}'), 1, 'errors by code')
})
