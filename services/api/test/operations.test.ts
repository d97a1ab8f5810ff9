import type { FastifyBaseLogger } from 'fastify'
import t from 'tap'
import { QuietWarnings } from '../src/logging.js'
import { buildTestApp, call, sleep } from './helpers.js'

const app = await buildTestApp(t, { ownCluster: true })

t.test('health and readiness', async (t) => {
  t.same((await call(app, 'GET', '/health')).json(), { status: 'ok' })
  const ready = await call(app, 'GET', '/ready')
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'ok' })
})

t.test('request ids: a plain one sent by the client is kept and echoed, anything else replaced', async (t) => {
  const kept = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': 'nginx-abc123' } })
  t.equal(kept.headers['x-request-id'], 'nginx-abc123')
  const replaced = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': 'bad id\twith "quotes"' } })
  t.match(replaced.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  const generated = await call(app, 'GET', '/health')
  t.match(generated.headers['x-request-id'], /^[0-9a-f-]{36}$/)
})

t.test('unknown routes answer a JSON 404 in the error shape', async (t) => {
  const res = await call(app, 'GET', '/nowhere')
  t.equal(res.statusCode, 404)
  t.same(Object.keys(res.json()).sort(), ['code', 'error', 'hint', 'message', 'statusCode'])
  t.match(res.json(), { code: 'NOT_FOUND', error: 'Not Found', hint: /^check the id and the path/ })
})

t.test('the OpenAPI document covers every route with schemas and examples', async (t) => {
  const res = await call(app, 'GET', '/docs/json')
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.equal(doc.openapi, '3.0.3')
  const paths = Object.keys(doc.paths)
  for (const expected of ['/api/sites', '/api/sites/{id}', '/api/resource-types', '/api/resources', '/api/resources/{id}',
    '/api/resources/{id}/allocations', '/api/allocations', '/api/allocations/{id}', '/api/cars', '/api/cars/{id}',
    '/api/cars/{id}/allocations', '/api/cars/{id}/allocations/{allocation_id}', '/api/lorries', '/api/trucks', '/api/computers',
    '/api/freezers', '/api/freezers/{id}/containers', '/api/containers/{id}', '/api/instruments', '/health', '/ready']) {
    t.ok(paths.includes(expected), `documents ${expected}`)
  }
  type Operation = {
    tags?: string[]
    responses?: Record<string, unknown>
    requestBody?: { content: Record<string, { schema: unknown, examples?: unknown, example?: unknown }> }
  }
  for (const [path, operations] of Object.entries<Record<string, Operation>>(doc.paths)) {
    for (const [method, op] of Object.entries(operations)) {
      t.ok(op.tags && op.tags.length > 0, `${method} ${path} has tags`)
      t.ok(op.responses && Object.keys(op.responses).some((s) => s.startsWith('2')), `${method} ${path} declares its success response`)
      if (op.requestBody) {
        const media = op.requestBody.content['application/json']
        t.ok(media?.schema, `${method} ${path} declares its body`)
        t.ok(media?.examples ?? media?.example, `${method} ${path} has a body example`)
      }
    }
  }
  const siteParams = doc.paths['/api/sites'].get.parameters as Array<{ name: string, required: boolean }>
  t.same(siteParams.filter((p) => p.required).map((p) => p.name), [], 'limit and offset have defaults, so they are optional')
  const docs = await call(app, 'GET', '/docs')
  t.ok([200, 302].includes(docs.statusCode), 'Swagger UI is served')
})

t.test('with the database gone: /ready and API calls answer 503, /health stays 200', async (t) => {
  await app.stopDatabase()
  const ready = await call(app, 'GET', '/ready')
  t.equal(ready.statusCode, 503)
  t.match(ready.json(), { code: 'DATABASE_UNAVAILABLE' })
  const list = await call(app, 'GET', '/api/sites')
  t.equal(list.statusCode, 503)
  t.equal(list.headers['retry-after'], '5')
  const write = await call(app, 'POST', '/api/sites', { name: 'nowhere' })
  t.equal(write.statusCode, 503)
  t.equal((await call(app, 'GET', '/health')).statusCode, 200)
})

t.test('a background job that keeps failing warns once per quiet period, not once per retry', async (t) => {
  const lines: unknown[][] = []
  const log = { warn: (...args: unknown[]) => { lines.push(args) } } as unknown as FastifyBaseLogger
  const warnings = new QuietWarnings(log, 200)
  const refused = Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' })
  for (let retry = 0; retry < 5; retry++) warnings.warn('numbering', refused, 'could not number')
  warnings.warn('sweep', new Error('timeout'), 'could not sweep')
  t.same(lines, [
    [{ code: 'ECONNREFUSED', message: 'connection refused' }, 'could not number'],
    [{ code: undefined, message: 'timeout' }, 'could not sweep']
  ], 'one line per job, whatever the retries')
  await sleep(250)
  warnings.warn('numbering', refused, 'could not number')
  t.equal(lines.length, 3, 'and one more once the quiet period is over')
})
