import t from 'tap'
import type { InjectOptions } from 'fastify'
import { bearer, buildTestApp, createAccount } from './helpers.js'

/**
 * Requests generated from the app's own OpenAPI document, for every operation in it, so
 * a route added later is fuzzed without touching this file: valid-ish and hostile values
 * for every path, query and header parameter and body property (wrong types, huge and
 * unicode strings, NUL bytes, deep nesting, times at and past the edges of the calendar,
 * huge numbers, unknown properties), broken bodies and content types, and callers with
 * and without a valid token. Every reply must be below 500, and every non-2xx the JSON
 * error shape. Bounded: 5,000 requests from a fixed seed in every `npm test`, so that a
 * failure always reproduces; `npm run test:fuzz` adds 2,000 from a random seed, printed
 * for replay (FUZZ_SEED=<n> replays it; FUZZ_REQUESTS=<n> changes how many per seed). Each
 * run also stops after its time budget on a machine too loaded to finish.
 */

const FIXED_SEED = 20260917
const PER_SEED = Number(process.env.FUZZ_REQUESTS ?? 0)
const asked = process.env.FUZZ_SEED
const RUNS: Array<{ seed: number, requests: number, seconds: number }> = [
  { seed: FIXED_SEED, requests: PER_SEED || 5000, seconds: 55 },
  ...(asked === undefined
    ? []
    : [{ seed: asked === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(asked), requests: PER_SEED || 2000, seconds: 25 }])
]
/** Fewer than this many requests in a run's budget would fuzz each operation too little to count. */
const MIN_REQUESTS = 1000

const app = await buildTestApp(t, { seed: true })
const member = await createAccount(app, 'member')
const me = (await app.inject({ url: '/api/me', headers: bearer(app.adminToken) })).json<{ token_id: string }>()

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Schema = Record<string, any>
interface Operation { method: string, path: string, parameters: Array<{ in: string, name: string, required?: boolean, schema: Schema }>, body?: Schema }

const document = app.swagger() as unknown as { paths: Record<string, Record<string, Schema>>, components?: { schemas?: Record<string, Schema> } }

/** The schema a `$ref` to the document's components names, so that a body given by reference is generated as what it is. */
const resolve = (schema: Schema | undefined): Schema | undefined =>
  typeof schema?.$ref === 'string' ? document.components?.schemas?.[schema.$ref.replace('#/components/schemas/', '')] : schema

const operations: Operation[] = Object.entries(document.paths).flatMap(([path, methods]) =>
  Object.entries(methods).map(([method, op]) => ({
    method: method.toUpperCase(),
    path,
    parameters: (op.parameters ?? []) as Operation['parameters'],
    body: resolve(op.requestBody?.content?.['application/json']?.schema as Schema | undefined)
  })))

/** mulberry32: small, seeded, good enough to pick test values. */
function prng (seed: number) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    chance: (p: number) => next() < p,
    int: (min: number, max: number) => min + Math.floor(next() * (max - min + 1)),
    pick: <T> (items: readonly T[]): T => items[Math.floor(next() * items.length)]!
  }
}
type Random = ReturnType<typeof prng>

/**
 * Ids seen in replies, so that many requests reach past the 404 of an unknown id: every
 * id anywhere, by kind, and the ids of the things a collection path lists or creates
 * (`/api/cars` → cars), for the parameter that follows that path (`/api/cars/{id}`).
 */
const seen = { uuid: new Set<string>(), integer: new Set<number>() }
const listed = new Map<string, Set<unknown>>()

function usable (value: unknown): boolean {
  // The admin's own token stays out: revoking it would turn the rest of the run into 401s.
  return (typeof value === 'string' && /^[0-9a-f-]{36}$/.test(value) && value !== me.token_id) ||
    (typeof value === 'number' && Number.isSafeInteger(value) && value > 0)
}

function harvest (value: unknown, key = ''): void {
  if (Array.isArray(value)) value.slice(0, 50).forEach((v) => harvest(v, key))
  else if (value !== null && typeof value === 'object') Object.entries(value).forEach(([k, v]) => harvest(v, k))
  else if ((key === 'id' || key.endsWith('_id')) && usable(value)) {
    if (typeof value === 'string') seen.uuid.add(value)
    else seen.integer.add(value as number)
  }
}

/** The ids a reply to `template` shows, filed under the collection they belong to. */
function file (template: string, body: unknown): void {
  const item = /\/\{[^}]+\}$/.test(template)
  const collection = item ? template.replace(/\/\{[^}]+\}$/, '') : template
  const ids = (Array.isArray(body) ? body : [body]).map((b) => (b as { id?: unknown } | null)?.id).filter(usable)
  if (ids.length === 0) return
  const set = listed.get(collection) ?? new Set()
  for (const id of ids.slice(0, 100)) set.add(id)
  listed.set(collection, set)
}

const HOSTILE_STRINGS = [
  '', ' ', '\u0000', 'a\u0000b', 'x'.repeat(100_000), '😀'.repeat(300), '\ud800', 'ﷺ', '\u202eevil', 'Ω≈ç√∫',
  "' OR '1'='1", '"; DROP TABLE site; --', '../../etc/passwd', '%00', '%zz', '\r\nX-Injected: 1', '<script>alert(1)</script>',
  'null', 'true', '[]', '{}', 'NaN', 'Infinity', '-0', '1e999', '9'.repeat(400), '0x1F', ' 42 ', '٣',
  'invsys_' + 'A'.repeat(43)
]
const HOSTILE_TIMES = [
  '0000-01-01T00:00:00Z', '0001-01-01T00:00:00+14:00', '0001-01-01T00:00:00Z', '9999-12-31T23:59:59.999999Z',
  '9999-12-31T23:00:00-14:00', '9999-12-31T23:59:60Z', '2030-06-01T23:59:60Z', '2030-06-01T12:59:60Z', '2030-02-30T00:00:00Z',
  '2030-06-01T00:00:00+24:00', '2030-06-01T00:00:00', '2030-06-01', '+010000-01-01T00:00:00Z', '-000001-01-01T00:00:00Z',
  '2030-06-01T00:00:00.1234567891234Z', '2030-06-01t00:00:00z', '2030-06-01 00:00:00Z', '1970-01-01T00:00:00-00:00', 'now', 'infinity'
]
/** Valid RFC 3339 at the edges of the calendar: PostgreSQL takes some that JSON cannot give back. */
const EDGE_TIMES = ['0001-01-01T00:00:00+14:00', '0001-01-01T05:00:00+14:00', '0001-01-01T00:00:00Z', '9999-12-31T23:00:00-14:00',
  '9999-12-31T23:59:59Z', '9999-12-31T23:59:60Z', '2030-06-01T23:59:60Z', '1970-01-01T00:00:00Z', '2030-06-01T00:00:00.000001+00:00']
const HOSTILE_NUMBERS = [0, -1, 1.5, 2 ** 31, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 1e308, -1e308, Number.MIN_VALUE, 2 ** 60]

function deep (depth: number): unknown {
  let value: unknown = {}
  for (let i = 0; i < depth; i++) value = { a: value }
  return value
}

function randomTime (r: Random): string {
  const ms = Date.UTC(r.int(2000, 2099), r.int(0, 11), r.int(1, 28), r.int(0, 23), r.pick([0, 15, 30, 45]))
  const iso = new Date(ms).toISOString()
  return r.chance(0.7) ? iso.replace('.000Z', 'Z') : iso.replace('.000Z', r.pick(['+02:00', '-05:30', '+14:00', '-12:00', '.123456Z']))
}

/** A value the schema accepts, most of the time; `hostile` gives one it should refuse (or survive). */
function valid (given: Schema, r: Random, depth = 0): unknown {
  const schema = resolve(given) ?? {}
  if (schema.nullable && r.chance(0.15)) return null
  if (schema.anyOf) return valid(r.pick(schema.anyOf as Schema[]), r, depth)
  if (schema.enum) return r.pick(schema.enum as unknown[])
  if (schema.example !== undefined && r.chance(0.3)) return schema.example
  switch (schema.type) {
    case 'integer': {
      const min = schema.minimum ?? 0
      const max = Math.min(schema.maximum ?? 1000, min + 1000)
      if (schema.maximum >= 1e6 && seen.integer.size > 0 && r.chance(0.7)) return r.pick([...seen.integer])
      return r.int(min, max)
    }
    case 'number': return r.next() * 1000
    case 'boolean': return r.chance(0.5)
    case 'array': {
      const fewest = schema.minItems ?? 0
      return Array.from({ length: r.int(fewest, Math.min(schema.maxItems ?? fewest + 3, fewest + 3)) }, () => valid(schema.items ?? {}, r, depth + 1))
    }
    case 'object': {
      const out: Record<string, unknown> = {}
      for (const [name, property] of Object.entries<Schema>(schema.properties ?? {})) {
        if ((schema.required ?? []).includes(name) || r.chance(0.5)) out[name] = valid(property, r, depth + 1)
      }
      if (schema.additionalProperties === true && depth < 3 && r.chance(0.3)) out[`k${r.int(0, 9)}`] = r.pick(['v', 1, [1, 2], { n: null }])
      return out
    }
    case 'string':
    default:
      if (schema.format === 'date-time') return r.chance(0.1) ? r.pick(EDGE_TIMES) : randomTime(r)
      if (schema.format === 'uuid') return seen.uuid.size > 0 && r.chance(0.8) ? r.pick([...seen.uuid]) : crypto.randomUUID()
      if (schema.pattern?.startsWith('^P')) return r.pick(['PT1H', 'PT30M', 'P1D', 'P1DT2H30M', 'PT0S', 'P1W'])
      if (schema.pattern?.startsWith('^([0-9A-Fa-f]')) return r.pick(['08:00:2b:01:02:03', '08-00-2B-01-02-0A', '0800.2b01.0203'])
      // Any other pattern random text would not match: the schema's own example does.
      if (schema.pattern && schema.example !== undefined) return schema.example
      return `fuzz-${r.int(0, 1e9).toString(36)}`.slice(0, schema.maxLength ?? 100)
  }
}

function hostile (schema: Schema, r: Random): unknown {
  if (schema.format === 'date-time' && r.chance(0.5)) return r.pick([...HOSTILE_TIMES, ...EDGE_TIMES])
  switch (r.int(0, 7)) {
    case 0: return r.pick(HOSTILE_STRINGS)
    case 1: return r.pick(HOSTILE_TIMES)
    case 2: return r.pick(HOSTILE_NUMBERS)
    case 3: return r.pick([null, true, false, [], {}, [1, 'a'], { nested: { deeper: [] } }])
    case 4: return deep(r.pick([10, 40, 2000]))
    case 5: return schema.type === 'string' ? 'x'.repeat((schema.maxLength ?? 100) + 1) : String(valid(schema, r))
    case 6: return schema.format === 'uuid' ? crypto.randomUUID().toUpperCase() : -Math.abs(Number(valid(schema, r)) || 1)
    default: return valid(schema, r)
  }
}

let hostility = 0
const value = (schema: Schema, r: Random) => (r.chance(hostility) ? hostile(schema, r) : valid(schema, r))

/** A query-string or path text for a value: JSON for objects, as is otherwise. */
const text = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v) ?? '')

/** Percent-encoded UTF-8; a lone surrogate, which encodeURIComponent refuses, as its raw bytes (not valid UTF-8). */
function encode (v: string): string {
  try {
    return encodeURIComponent(v)
  } catch {
    return v.replace(/[\ud800-\udfff]/g, '%ED%A0%80').split('%ED%A0%80').map((part) => encodeURIComponent(part)).join('%ED%A0%80')
  }
}

function request (op: Operation, r: Random): InjectOptions {
  // Half the requests are valid-ish throughout, to get past validation; the others carry hostile values.
  hostility = r.chance(0.5) ? 0 : 0.3
  let url = op.path
  const query: string[] = []
  const headers: Record<string, string> = {}
  for (const parameter of op.parameters) {
    if (parameter.in === 'path') {
      const known = listed.get(op.path.slice(0, op.path.indexOf(`/{${parameter.name}}`)))
      const v = text(known && hostility === 0 && r.chance(0.85) ? r.pick([...known]) : value(parameter.schema, r))
      url = url.replace(`{${parameter.name}}`, r.chance(0.05) ? v : encode(v))
    } else if (parameter.in === 'query') {
      if (!parameter.required && r.chance(0.5)) continue
      const v = encode(text(value(parameter.schema, r)))
      query.push(`${parameter.name}=${v}`)
      if (r.chance(hostility / 10)) query.push(`${parameter.name}=${v}`)
    } else if (parameter.in === 'header' && r.chance(0.3)) {
      const v = text(value(parameter.schema, r))
      // Node refuses to send what HTTP cannot carry; those bytes are the parser's business (edges.test.ts).
      if (/^[\t\x20-\x7e]*$/.test(v) && v.length < 8000) headers[parameter.name] = v
    }
  }
  if (r.chance(hostility / 5)) query.push(`unknown_${r.int(0, 9)}=1`)
  if (query.length > 0) url += `?${query.join('&')}`

  const caller = hostility === 0 ? r.next() * 0.9 : r.next()
  if (caller < 0.75) Object.assign(headers, bearer(app.adminToken))
  else if (caller < 0.9) Object.assign(headers, bearer(member.token))
  else if (caller < 0.95) headers.authorization = r.pick(['Bearer invsys_unknownunknownunknownunknown', 'Basic YTpi', 'Bearer', ''])

  const options: InjectOptions = { method: op.method, url, headers }
  if (op.body || r.chance(hostility / 5)) {
    let payload: string
    if (op.body && (hostility === 0 || r.chance(0.8))) {
      const body = value(op.body, r)
      if (r.chance(hostility / 3) && body !== null && typeof body === 'object' && !Array.isArray(body)) (body as Record<string, unknown>)[`extra_${r.int(0, 9)}`] = 1
      const names = Object.keys(op.body.properties ?? {})
      if (names.length > 0 && r.chance(hostility) && body !== null && typeof body === 'object') {
        // One property made hostile, the rest left valid: reaches further than a wholly broken body.
        const name = r.pick(names)
        ;(body as Record<string, unknown>)[name] = hostile(op.body.properties[name] as Schema, r)
      }
      payload = JSON.stringify(body) ?? 'null'
    } else {
      payload = r.pick(['', 'null', '[]', '{', '{"a":1}{', '"text"', '42', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}',
        '['.repeat(20_000), '\u0000', '{"a":"\\ud800"}'])
    }
    options.payload = payload
    headers['content-type'] = hostility === 0 || r.chance(0.7) ? 'application/json' : r.pick(['text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', 'multipart/form-data; boundary=x', 'application/vnd.api+json'])
  }
  return options
}

const timing = new Map<string, number>()

interface Failure { seed: number, index: number, method: string, url: string, status: number, body: string, payload?: string }

async function fuzz (seed: number, count: number, seconds: number): Promise<{ sent: number, failures: Failure[], statuses: Map<number, number>, reached: Set<string> }> {
  const r = prng(seed)
  const failures: Failure[] = []
  const statuses = new Map<number, number>()
  const reached = new Set<string>()
  const deadline = Date.now() + seconds * 1000
  let index = 0
  for (; index < count && Date.now() < deadline; index++) {
    const op = operations[index % operations.length]!
    const options = request(op, r)
    const began = performance.now()
    const res = await app.inject(options)
    statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
    let body: unknown
    try { body = res.body === '' ? undefined : JSON.parse(res.body) } catch { body = undefined }
    if (res.statusCode < 300) {
      reached.add(`${op.method} ${op.path}`)
      harvest(body)
      file(op.path, body)
    }
    if (process.env.FUZZ_DEBUG) timing.set(op.path, (timing.get(op.path) ?? 0) + (performance.now() - began))
    const b = body as Record<string, unknown> | undefined
    const shaped = res.statusCode < 300 ||
      (!!b && b.statusCode === res.statusCode && typeof b.code === 'string' && typeof b.error === 'string' && typeof b.message === 'string' && typeof b.hint === 'string' &&
        /application\/json/.test(String(res.headers['content-type'])))
    if (res.statusCode >= 500 || !shaped) {
      failures.push({ seed, index, method: op.method, url: JSON.stringify(options.url).slice(0, 300), status: res.statusCode, body: res.body.slice(0, 300), payload: JSON.stringify(options.payload ?? '').slice(0, 300) })
    }
  }
  return { sent: index, failures, statuses, reached }
}

for (const { seed, requests, seconds } of RUNS) {
  t.test(`${requests} requests from seed ${seed} (replay: FUZZ_SEED=${seed} npx tap services/api/test/fuzz.test.ts)`, async (t) => {
    t.comment(`fuzzing ${operations.length} operations with seed ${seed}`)
    const { sent, failures, statuses, reached } = await fuzz(seed, requests, seconds)
    t.comment(`${sent} requests sent${sent < requests ? ` (the ${seconds} s budget ran out first)` : ''}`)
    t.ok(sent >= Math.min(requests, MIN_REQUESTS), `enough requests to count (${sent})`)
    t.comment(`statuses: ${[...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ')}`)
    t.comment(`operations answered 2xx at least once: ${reached.size} of ${operations.length}`)
    if (process.env.FUZZ_DEBUG) t.comment([...timing].sort(([, a], [, b]) => b - a).slice(0, 15).map(([p, ms]) => `${p} ${Math.round(ms)} ms`).join('\n'))
    t.same(failures.slice(0, 20), [], `no 5xx, and every non-2xx in the JSON error shape (${failures.length} failures; seed ${seed})`)
    t.ok(operations.length >= 100, `every operation of the document was fuzzed (${operations.length})`)
    // How far random input gets past validation depends on the seed: judged on the fixed
    // one, so that a worse generator fails every run and a random seed never fails alone;
    // and on its whole run, which a machine too loaded to finish in the budget cuts short.
    if (seed === FIXED_SEED && sent === requests) t.ok(reached.size >= operations.length / 2, 'and the fuzzer got past validation on half of them or more')
  })
}
