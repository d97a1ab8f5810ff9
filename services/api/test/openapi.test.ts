import { execFile } from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import SwaggerParser from '@apidevtools/swagger-parser'
import { Validator } from '@seriousme/openapi-schema-validator'
import Fastify from 'fastify'
import swagger from '@fastify/swagger'
import openapiTS, { astToString } from 'openapi-typescript'
import t from 'tap'
import { repoRoot } from '../src/config.js'
import { ERROR_CODES } from '../src/plugins/errors.js'
import { deriveOperationId, escapePlaceholders, openapiDocumenter } from '../src/plugins/openapi.js'
import { errorResponses } from '../src/schemas/common.js'
import { buildTestApp, listen, packageScratchDir, untapped } from './helpers.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- the document is plain JSON, read by shape */
type Json = Record<string, any>

const run = promisify(execFile)
const app = await buildTestApp(t, { seed: true })
const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json<Json>()

const METHODS = ['get', 'put', 'post', 'delete', 'patch']
const operations = Object.entries<Json>(doc.paths).flatMap(([url, item]) =>
  METHODS.filter((method) => item[method]).map((method) => ({ url, method, op: item[method] as Json, name: `${method.toUpperCase()} ${url}` })))

t.test('both validators accept the document', async (t) => {
  t.equal(doc.openapi, '3.0.3')
  const result = await new Validator().validate(structuredClone(doc))
  t.same(result.errors ?? [], [], '@seriousme/openapi-schema-validator')
  t.ok(result.valid)
  await t.resolves(SwaggerParser.validate(structuredClone(doc) as any), '@apidevtools/swagger-parser')
})

t.test('redocly lint with the committed redocly.yaml (recommended rules): no error, no warning', async (t) => {
  const dir = await packageScratchDir(t, 'invsys-openapi-')
  const file = path.join(dir, 'openapi.json')
  await fs.writeFile(file, JSON.stringify(doc))
  const redocly = path.join(repoRoot, 'node_modules', '.bin', 'redocly')
  const { stdout } = await run(...untapped(redocly, ['lint', file, '--config', path.join(repoRoot, 'redocly.yaml'), '--format', 'json', '--max-problems', '50']), {
    cwd: repoRoot,
    // No telemetry and no update check: CI has no network, and waits for nothing.
    env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' }
  }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }))
  const report = JSON.parse(stdout) as { totals: { errors: number, warnings: number }, problems: Array<{ ruleId: string, message: string, location: Array<{ pointer: string }> }> }
  const problems = report.problems.map((p) => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`)
  t.same(problems, [], 'no problems')
  t.same(report.totals, { errors: 0, warnings: 0, ignored: 0 })
})

t.test('servers is set; every operation has a unique, generator-friendly operationId', async (t) => {
  t.ok(Array.isArray(doc.servers) && doc.servers.length > 0, 'servers')
  const ids = operations.map(({ op }) => op.operationId)
  t.ok(ids.every((id) => typeof id === 'string' && /^[a-z][A-Za-z0-9]*$/.test(id)), 'every operation is named, in camelCase')
  t.equal(new Set(ids).size, ids.length, 'no name twice')
  const named = Object.fromEntries(operations.map(({ name, op }) => [name, op.operationId]))
  t.match(named, {
    'GET /api/sites': 'listSites',
    'POST /api/sites': 'createSite',
    'GET /api/sites/{id}': 'getSite',
    'PUT /api/sites/{id}': 'replaceSite',
    'PATCH /api/sites/{id}': 'updateSite',
    'DELETE /api/sites/{id}': 'deleteSite',
    'POST /api/cars/{id}/allocations': 'createCarAllocation',
    'GET /api/cars/{id}/allocations/{allocation_id}': 'getCarAllocation',
    'POST /api/allocations/{id}/confirm': 'confirmAllocation',
    'GET /api/allocations/{id}/history': 'listAllocationHistory',
    'GET /api/lorries': 'listLorries',
    'GET /api/resource-types': 'listResourceTypes',
    'GET /api/me': 'getMe',
    'GET /health': 'getHealth'
  })
})

t.test('public routes say security: [], every /api route the bearer scheme and a 4xx', async (t) => {
  const wrong = operations.filter(({ url, op }) => url.startsWith('/api/')
    ? JSON.stringify(op.security) !== '[{"bearerAuth":[]}]' || !Object.keys(op.responses).some((status) => status.startsWith('4'))
    : JSON.stringify(op.security) !== '[]')
  t.same(wrong.map(({ name }) => name), [])
  t.same(doc.paths['/health'].get.security, [])
})

/** Every schema in the document, with where it is. */
function * schemas (node: unknown, at: string): Generator<[Json, string]> {
  if (typeof node !== 'object' || node === null) return
  if (Array.isArray(node)) {
    for (const [i, item] of node.entries()) yield * schemas(item, `${at}/${i}`)
    return
  }
  for (const [key, value] of Object.entries(node)) {
    if (key === 'example' || key === 'examples' || key === 'default' || key === 'enum') continue
    if (key === 'schema' || key === 'items' || key === 'additionalProperties') {
      if (typeof value === 'object' && value !== null) yield [value as Json, `${at}/${key}`]
    }
    if ((key === 'anyOf' || key === 'oneOf' || key === 'allOf') && Array.isArray(value)) {
      for (const [i, sub] of value.entries()) yield [sub as Json, `${at}/${key}/${i}`]
    }
    if (key === 'properties' && typeof value === 'object' && value !== null) {
      for (const [name, sub] of Object.entries(value)) yield [sub as Json, `${at}/properties/${name}`]
    }
    yield * schemas(value, `${at}/${key}`)
  }
}

t.test('schemas in OpenAPI 3.0 terms: plain enums, nullable, no JSON Schema examples', async (t) => {
  const literalUnions: string[] = []
  const nullTypes: string[] = []
  const components = Object.entries<Json>(doc.components.schemas).map(([name, schema]): [Json, string] => [schema, `#/components/schemas/${name}`])
  for (const [schema, at] of [...schemas(doc.paths, '#/paths'), ...components, ...schemas(doc.components, '#/components')]) {
    for (const combinator of ['anyOf', 'oneOf']) {
      const members = schema[combinator] as Json[] | undefined
      if (members?.every((m) => Array.isArray(m.enum) && m.enum.length === 1)) literalUnions.push(at)
      if (members?.some((m) => m.type === 'null' || (m.nullable && m.enum?.[0] === null))) nullTypes.push(at)
    }
  }
  t.same(literalUnions, [], 'no union of single-value enums: one enum instead')
  t.same(nullTypes, [], 'no union with null: nullable instead')
  const status = doc.paths['/api/allocations'].get.parameters.find((p: Json) => p.name === 'status')
  t.same(status.schema, { type: 'string', enum: ['held', 'confirmed', 'cancelled', 'expired', 'all'], default: 'confirmed' }, 'the status filter is a plain enum')
  const expires = doc.components.schemas.Allocation.properties.expires_at
  t.match(expires, { type: 'string', format: 'date-time', nullable: true })
})

t.test('named schemas are components, so that a generator makes one type of each', async (t) => {
  for (const name of ['Allocation', 'AllocationInput', 'AllocationConflictError', 'Error', 'Site', 'SiteInput', 'Resource', 'Account', 'NewApiToken']) {
    t.ok(doc.components.schemas[name], `components.schemas.${name}`)
  }
  const booking = doc.paths['/api/cars/{id}/allocations'].post
  t.same(booking.requestBody.content['application/json'].schema, { $ref: '#/components/schemas/AllocationInput' })
  t.same(booking.responses['201'].content['application/json'].schema, { $ref: '#/components/schemas/Allocation' })
  t.same(booking.responses['404'].content['application/json'].schema, { $ref: '#/components/schemas/Error' })
  t.same(doc.paths['/api/sites'].get.responses['200'].content['application/json'].schema, { type: 'array', items: { $ref: '#/components/schemas/Site' } })
})

t.test('successes have real descriptions; 201s their Location, pages their Link', async (t) => {
  const wrong = operations.flatMap(({ op, name }) => Object.entries<Json>(op.responses)
    .filter(([status, response]) => !response.description || response.description === 'Default Response' ||
      (status === '201' && !response.headers?.Location))
    .map(([status]) => `${name} ${status}`))
  t.same(wrong, [])
  t.ok(doc.paths['/api/sites'].get.responses['200'].headers.Link, 'a collection documents its Link header')
})

t.test('every request body example is named and has a summary', async (t) => {
  const bodies = operations.flatMap(({ op, name }) => Object.values<Json>(op.requestBody?.content ?? {}).map((media) => ({ media, name })))
  t.ok(bodies.length > 20)
  const wrong = bodies.filter(({ media }) => media.example !== undefined || Object.keys(media.examples ?? {}).length === 0 ||
    Object.values<Json>(media.examples).some((example) => !example.summary || example.value === undefined))
  t.same(wrong.map(({ name }) => name), [])
  t.same(Object.values<Json>(doc.paths['/api/allocations/{id}'].patch.requestBody.content['application/json'].examples).map((e) => e.summary),
    ['Change or move an allocation (members: their own)'])
})

t.test('each error status of each operation shows an example of each code it can carry, with that status', async (t) => {
  const codes = ERROR_CODES as Record<string, { status: number, action: string }>
  const wrong: string[] = []
  let checked = 0
  for (const { op, name } of operations) {
    for (const [status, response] of Object.entries<Json>(op.responses)) {
      if (!/^[45]/.test(status)) continue
      const media = response.content?.['application/json']
      const examples = Object.entries<Json>(media?.examples ?? {})
      if (examples.length === 0 || media.example !== undefined) wrong.push(`${name} ${status}: no examples, or a stand-in one`)
      for (const [key, { value, summary }] of examples) {
        checked++
        const shape = Object.keys(value).filter((k) => k !== 'conflicts').join()
        if (value.statusCode !== Number(status) || codes[value.code]?.status !== Number(status) || key !== value.code || !summary ||
          shape !== 'statusCode,code,error,message,hint' || typeof value.message !== 'string' || value.hint !== codes[value.code]?.action) {
          wrong.push(`${name} ${status}: example ${key} has status ${value.statusCode} and code ${value.code} (a ${codes[value.code]?.status})`)
        }
      }
    }
  }
  t.same(wrong, [])
  t.ok(checked > 500, `${checked} examples checked`)
  const conflicts = (url: string, method: string) => Object.keys(doc.paths[url][method].responses['409'].content['application/json'].examples)
  t.same(conflicts('/api/cars/{id}/allocations', 'post'), ['ALLOCATION_CONFLICT', 'IDEMPOTENCY_KEY_IN_USE'], 'booking: its 409s')
  t.same(conflicts('/api/allocations/{id}', 'patch'), ['ALLOCATION_CONFLICT', 'ALLOCATION_CANCELLED', 'HOLD_EXPIRED'], 'moving: its 409s')
  t.same(conflicts('/api/allocations/{id}/confirm', 'post'), ['HOLD_EXPIRED', 'ALREADY_CONFIRMED', 'ALLOCATION_CANCELLED'], 'confirming: its 409s')
  t.same(conflicts('/api/sites/{id}', 'delete'), ['IN_USE'], 'deleting a site: IN_USE only')
  const conflict = doc.paths['/api/cars/{id}/allocations'].post.responses['409'].content['application/json'].examples.ALLOCATION_CONFLICT.value
  t.equal(conflict.conflicts.length, 1, 'ALLOCATION_CONFLICT shows what is in the way')
  t.same(Object.keys(doc.paths['/api/sites/{id}'].get.responses['401'].content['application/json'].examples), ['UNAUTHENTICATED', 'INVALID_TOKEN'])
})

t.test('Swagger UI shows every description whole: no <placeholder> left for Markdown to take as HTML', async (t) => {
  const raw: string[] = []
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk)
    if (typeof node !== 'object' || node === null) return
    for (const [key, value] of Object.entries(node)) {
      if (key === 'example' || key === 'examples' || key === 'default' || key === 'enum') continue
      if (key === 'description' && typeof value === 'string') {
        // Code spans are shown as they are written; anything else that looks like a tag is not.
        if (/<[A-Za-z]/.test(value.replace(/`[^`]*`/g, ''))) raw.push(value)
      } else walk(value)
    }
  }
  walk(doc)
  t.same(raw, [])
  t.match(doc.info.description, '`Authorization: Bearer <token>`')
  t.equal(escapePlaceholders('each has a family /api/<plural>'), 'each has a family `/api/<plural>`')
  t.equal(escapePlaceholders('see /api/<plural>/{id}, then <token>.'), 'see `/api/<plural>/{id}`, then `<token>`.')
  t.equal(escapePlaceholders('public (/feeds/<secret>.ics).'), 'public (`/feeds/<secret>.ics`).')
  t.equal(escapePlaceholders('send "Authorization: Bearer <token>" first'), 'send `Authorization: Bearer <token>` first')
  t.equal(escapePlaceholders('already `<code>` and <b>'), 'already `<code>` and `<b>`')
  for (const url of ['/docs/', '/docs/static/index.css', '/docs/static/swagger-ui-bundle.js']) {
    t.equal((await app.inject({ method: 'GET', url })).statusCode, 200, `Swagger UI is served: ${url}`)
  }
})

t.test('a typed client generated from the document type-checks a program that books a car, which then runs', async (t) => {
  const dir = await packageScratchDir(t, 'invsys-openapi-')
  await fs.writeFile(path.join(dir, 'invsys-api.d.ts'), astToString(await openapiTS(doc as any, { silent: true })))
  await fs.copyFile(path.join(import.meta.dirname, 'fixtures', 'client', 'book-a-car.ts'), path.join(dir, 'book-a-car.ts'))
  await fs.writeFile(path.join(dir, 'package.json'), JSON.stringify({ type: 'module' }))
  await fs.writeFile(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] },
    files: ['book-a-car.ts']
  }))
  const tsc = path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc')
  const checked = await run(...untapped(process.execPath, [tsc, '-p', path.join(dir, 'tsconfig.json')])).then(() => '', (error: { stdout?: string, message: string }) => error.stdout ?? error.message)
  t.equal(checked, '', 'tsc --strict finds nothing')

  // A path tsc does not follow: the program is checked above, against the generated types only.
  const program = path.join(import.meta.dirname, 'fixtures', 'client', 'book-a-car.ts')
  const { bookACar } = await import(program) as { bookACar: (baseUrl: string, token: string) => Promise<unknown> }
  const outcome = await bookACar(await listen(app), app.adminToken)
  t.match(outcome, { booked: { resource_type: 'car', status: 'confirmed', starts_at: '2031-03-03T08:00:00Z' }, refusal: 'ALLOCATION_CONFLICT', conflicts: 1 })
})

t.test('operationIds for routes to come: derived from method and URL, stable, unique at boot', async (t) => {
  t.equal(deriveOperationId('GET', '/api/resource-types/:type/rules', false), 'getResourceTypeRules')
  t.equal(deriveOperationId('PUT', '/api/cars/:id/rules', false), 'replaceCarRules')
  t.equal(deriveOperationId('POST', '/api/resources/:id/series', false), 'createResourceSeries')
  t.equal(deriveOperationId('GET', '/api/series/:id', false), 'getSeries')
  t.equal(deriveOperationId('GET', '/api/feeds', true), 'listFeeds')
  t.equal(deriveOperationId('DELETE', '/api/feeds/:id', false), 'deleteFeed')
  t.equal(deriveOperationId('GET', '/feeds/:secret.ics', false), 'getFeedIcs')
  t.equal(deriveOperationId('GET', '/api/lorries/:id/allocations/:allocation_id/history', true), 'listLorryAllocationHistory')

  const boot = async (routes: (app: ReturnType<typeof Fastify>) => void) => {
    const app = Fastify()
    const documenter = openapiDocumenter()
    app.addHook('onRoute', documenter.onRoute)
    app.addHook('onReady', documenter.onReady)
    await app.register(swagger, { openapi: { openapi: '3.0.3' }, transform: documenter.transform, transformObject: documenter.transformObject })
    routes(app)
    await app.ready()
    return app
  }
  await t.rejects(boot((app) => {
    app.get('/api/things', async () => [])
    app.get('/api/Things', async () => [])
  }), /operationId getThings is already GET \/api\/things's/, 'two routes with one name stop the boot')
  const named = await boot((app) => {
    app.get('/api/things', async () => [])
    app.get('/api/Things', { config: { operationId: 'getThingsAgain' } }, async () => [])
  })
  t.same(Object.values<Json>((named.swagger() as Json).paths).map((item) => item.get.operationId).sort(), ['getThings', 'getThingsAgain'], 'config.operationId names one by hand')
  await named.close()
  await t.rejects(boot((app) => {
    app.delete('/api/things/:id', { schema: { response: errorResponses({ 409: ['NOT_FOUND'] }) } }, async () => null)
  }), /NOT_FOUND is a 404, not a 409/, 'a code named under another status stops the boot')
  const later = await boot((app) => {
    app.put('/api/things/:id', { schema: { response: { 200: { type: 'object' }, ...errorResponses(406, 409) } } }, async () => ({}))
  })
  const put = (later.swagger() as Json).paths['/api/things/{id}'].put
  t.equal(put.operationId, 'replaceThing')
  t.equal(put.responses['406'].description, 'Not Acceptable; codes: NOT_ACCEPTABLE', 'a status without a sentence is named')
  t.same(Object.keys(put.responses['409'].content['application/json'].examples), Object.keys(ERROR_CODES).filter((code) => (ERROR_CODES as Json)[code].status === 409),
    'a status that names no codes shows every code of that status')
  await later.close()
})
