import t from 'tap'
import { generateToken } from '../src/tokens.js'
import { buildTestApp, call, createAccount, createResource, createSite, unique, type TestAccount } from './helpers.js'

/**
 * Every route × every kind of caller, with the exact status of each cell. The routes
 * come from the app itself (its OpenAPI document, cross-checked with the routes the
 * auth hook saw), and a route without a row fails the test: a route added later (or
 * merged from another branch) cannot slip through unexamined.
 */

// Webhooks point at a closed loopback port: their deliveries go nowhere else.
const app = await buildTestApp(t, { env: { WEBHOOK_ALLOWED_CIDRS: '127.0.0.1/32' } })
const member = await createAccount(app, 'member')
const other = await createAccount(app, 'member')
const formerAdmin = await createAccount(app, 'admin')
if ((await call(app, 'DELETE', `/api/tokens/${formerAdmin.tokenId}`)).statusCode !== 204) throw new Error('could not revoke')

/** The columns, in the order the cells run: refusals first, so a write that succeeds runs last. */
const CALLERS: Array<{ name: string, authorization: string | undefined }> = [
  { name: 'no token', authorization: undefined },
  { name: 'malformed', authorization: 'Bearer not-an-invsys-token' },
  { name: 'unknown', authorization: `Bearer ${generateToken()}` },
  { name: 'revoked (an admin\'s)', authorization: `Bearer ${formerAdmin.token}` },
  { name: 'member', authorization: `Bearer ${member.token}` },
  { name: 'another member', authorization: `Bearer ${other.token}` },
  { name: 'admin', authorization: `Bearer ${app.adminToken}` }
]

type Params = Record<string, string | number>

interface Row {
  /** "METHOD /path/{param}" as in the OpenAPI document. */
  route: string
  /** One status per column of CALLERS. */
  cells: [number, number, number, number, number, number, number]
  /** Fresh things for this row to act on, made by the admin; by path parameter. */
  params?: () => Promise<Params>
  /** A valid body, made anew for each cell (so that creating twice does not collide). */
  body?: () => unknown
  /** A valid query string, for routes that need one (a time window). */
  query?: string
  /** Make the params anew for each cell: for actions that work only once, such as confirming a hold. */
  paramsPerCell?: boolean
}

/** The statuses of the four callers without a valid token, then member, another member, admin. */
const cells = (member: number, another: number, admin: number): Row['cells'] => [401, 401, 401, 401, member, another, admin]

let hour = 0
const slot = () => {
  hour += 1
  const start = Date.UTC(2033, 0, 1) + hour * 3600_000
  return { starts_at: new Date(start).toISOString(), ends_at: new Date(start + 3600_000).toISOString() }
}

/** A booking owned by `member`, of a new resource of `type`. */
async function booked (type: string): Promise<Params> {
  const resource = await createResource(app, type)
  const res = await call(app, 'POST', `/api/resources/${resource.id}/allocations`, slot(), { token: member.token })
  if (res.statusCode !== 201) throw new Error(res.body)
  return { id: resource.id, allocation_id: res.json().id }
}

let week = 0
/** A weekly series of three, each body in a week of its own (cells never collide). */
const seriesBody = () => {
  week += 1
  const start = Date.UTC(2034, 0, 2, 9) + week * 3 * 7 * 86_400_000
  return { starts_at: new Date(start).toISOString(), ends_at: new Date(start + 3600_000).toISOString(), time_zone: 'Europe/Lisbon', rrule: 'FREQ=WEEKLY;COUNT=3' }
}

/** A series owned by `member`, of a new car. */
async function series (): Promise<Params> {
  const resource = await createResource(app, 'car')
  const res = await call(app, 'POST', `/api/resources/${resource.id}/series`, seriesBody(), { token: member.token })
  if (res.statusCode !== 201) throw new Error(res.body)
  return { id: res.json().id }
}

/** A hold owned by `member`, of a new resource of `type`. */
async function held (type: string): Promise<Params> {
  const resource = await createResource(app, type)
  const res = await call(app, 'POST', `/api/resources/${resource.id}/allocations`, { ...slot(), status: 'held', hold_seconds: 600 }, { token: member.token })
  if (res.statusCode !== 201) throw new Error(res.body)
  return { id: resource.id, allocation_id: res.json().id }
}

const WINDOW = 'from=2033-01-01T00:00:00Z&to=2033-01-08T00:00:00Z'

async function container (): Promise<Params> {
  const freezer = await createResource(app, 'freezer')
  const res = await call(app, 'POST', `/api/freezers/${freezer.id}/containers`, { description: 'matrix' })
  return { id: res.json().id }
}

async function memberFeed (): Promise<Params> {
  return { id: (await call(app, 'POST', '/api/feeds', { label: 'matrix', mine: true }, { token: member.token })).json().id }
}

async function webhook (): Promise<Params> {
  const res = await call(app, 'POST', '/api/webhooks', { url: 'http://127.0.0.1:9/matrix', types: ['resource.deleted'] })
  if (res.statusCode !== 201) throw new Error(res.body)
  return { id: res.json().id }
}

async function extraToken (account: TestAccount): Promise<Params> {
  return { id: (await call(app, 'POST', `/api/accounts/${account.id}/tokens`, {})).json().id }
}

/** The routes of one resource family: /api/resources, or /api/<plural> for one type. */
function family (base: string, type: string | undefined): Row[] {
  const fixtureType = type ?? 'car'
  const resourceBody = () => ({ ...(type ? {} : { type: fixtureType }), name: unique('matrix') })
  const resource = async () => ({ id: (await createResource(app, fixtureType)).id })
  return [
    { route: `GET ${base}`, cells: cells(200, 200, 200) },
    { route: `POST ${base}`, cells: cells(403, 403, 201), body: resourceBody },
    { route: `GET ${base}/{id}`, cells: cells(200, 200, 200), params: resource },
    { route: `PUT ${base}/{id}`, cells: cells(403, 403, 200), params: resource, body: resourceBody },
    { route: `PATCH ${base}/{id}`, cells: cells(403, 403, 200), params: resource, body: () => ({ name: unique('matrix') }) },
    { route: `DELETE ${base}/{id}`, cells: cells(403, 403, 204), params: resource },
    { route: `GET ${base}/{id}/allocations`, cells: cells(200, 200, 200), params: resource },
    // Bookings are for everyone with a token; each cell books its own slot.
    { route: `POST ${base}/{id}/allocations`, cells: cells(201, 201, 201), params: resource, body: slot },
    { route: `GET ${base}/{id}/free`, cells: cells(200, 200, 200), params: resource, query: WINDOW },
    { route: `GET ${base}/{id}/calendar.ics`, cells: cells(200, 200, 200), params: resource },
    { route: `GET ${base}/{id}/rules`, cells: cells(200, 200, 200), params: resource },
    { route: `PUT ${base}/{id}/rules`, cells: cells(403, 403, 200), params: resource, body: () => ({ buffer_after: null }) },
    { route: `POST ${base}/{id}/series`, cells: cells(201, 201, 201), params: resource, body: seriesBody },
    ...allocationItem(`${base}/{id}/allocations/{allocation_id}`, () => booked(fixtureType), () => held(fixtureType))
  ]
}

/**
 * One allocation, owned by `member`: another member may read it and its history, not
 * change, cancel or confirm it. `hold` makes a fresh hold owned by `member` for each
 * confirming cell.
 */
function allocationItem (path: string, params: () => Promise<Params>, hold: () => Promise<Params>): Row[] {
  return [
    { route: `GET ${path}`, cells: cells(200, 200, 200), params },
    { route: `PATCH ${path}`, cells: cells(200, 403, 200), params, body: () => ({ description: unique('moved') }) },
    { route: `DELETE ${path}`, cells: cells(204, 403, 204), params },
    { route: `POST ${path}/confirm`, cells: cells(200, 403, 200), params: hold, paramsPerCell: true, body: () => ({}) },
    { route: `GET ${path}/history`, cells: cells(200, 200, 200), params }
  ]
}

const types = (await call(app, 'GET', '/api/resource-types')).json<Array<{ name: string, plural: string }>>()

const rows: Row[] = [
  { route: 'GET /api/me', cells: cells(200, 200, 200) },
  { route: 'GET /api/accounts', cells: cells(403, 403, 200) },
  { route: 'POST /api/accounts', cells: cells(403, 403, 201), body: () => ({ name: unique('matrix') }) },
  // {id} is the member's own account: it may, another member may not.
  { route: 'GET /api/accounts/{id}', cells: cells(200, 403, 200), params: async () => ({ id: member.id }) },
  { route: 'GET /api/accounts/{id}/tokens', cells: cells(200, 403, 200), params: async () => ({ id: member.id }) },
  { route: 'POST /api/accounts/{id}/tokens', cells: cells(201, 403, 201), params: async () => ({ id: member.id }), body: () => ({ label: 'matrix' }) },
  // A second token of the member's (not the one the member column uses).
  { route: 'GET /api/tokens/{id}', cells: cells(200, 403, 200), params: () => extraToken(member) },
  { route: 'DELETE /api/tokens/{id}', cells: cells(204, 403, 204), params: () => extraToken(member) },

  { route: 'GET /api/sites', cells: cells(200, 200, 200) },
  { route: 'POST /api/sites', cells: cells(403, 403, 201), body: () => ({ name: unique('matrix') }) },
  { route: 'GET /api/sites/{id}', cells: cells(200, 200, 200), params: () => createSite(app) },
  { route: 'PUT /api/sites/{id}', cells: cells(403, 403, 200), params: () => createSite(app), body: () => ({ name: unique('matrix') }) },
  { route: 'PATCH /api/sites/{id}', cells: cells(403, 403, 200), params: () => createSite(app), body: () => ({ contact: 'matrix' }) },
  { route: 'DELETE /api/sites/{id}', cells: cells(403, 403, 204), params: () => createSite(app) },

  { route: 'GET /api/resource-types', cells: cells(200, 200, 200) },
  { route: 'GET /api/resource-types/{type}/rules', cells: cells(200, 200, 200), params: async () => ({ type: 'truck' }) },
  // Sets no rule: the other rows book trucks as members.
  { route: 'PUT /api/resource-types/{type}/rules', cells: cells(403, 403, 200), params: async () => ({ type: 'truck' }), body: () => ({}) },
  ...family('/api/resources', undefined),
  ...types.flatMap((type) => family(`/api/${type.plural}`, type.name)),

  { route: 'GET /api/allocations', cells: cells(200, 200, 200) },
  { route: 'POST /api/allocations', cells: cells(201, 201, 201), body: () => ({ type: 'car', ...slot() }) },
  ...allocationItem('/api/allocations/{id}', async () => ({ id: (await booked('car')).allocation_id! }),
    async () => ({ id: (await held('car')).allocation_id! })),
  { route: 'GET /api/slots', cells: cells(200, 200, 200), query: `type=car&duration=PT1H&${WINDOW}` },
  { route: 'GET /api/series/{id}', cells: cells(200, 200, 200), params: series },
  { route: 'DELETE /api/series/{id}', cells: cells(204, 403, 204), params: series },

  { route: 'GET /api/freezers/{id}/containers', cells: cells(200, 200, 200), params: async () => ({ id: (await createResource(app, 'freezer')).id }) },
  { route: 'POST /api/freezers/{id}/containers', cells: cells(403, 403, 201), params: async () => ({ id: (await createResource(app, 'freezer')).id }), body: () => ({ description: 'matrix' }) },
  { route: 'GET /api/containers/{id}', cells: cells(200, 200, 200), params: container },
  { route: 'PATCH /api/containers/{id}', cells: cells(403, 403, 200), params: container, body: () => ({ description: 'moved' }) },
  { route: 'DELETE /api/containers/{id}', cells: cells(403, 403, 204), params: container },
  { route: 'GET /api/instruments', cells: cells(200, 200, 200) },

  // Feeds: anyone creates and lists their own; a feed of the member's may be revoked by it or an admin.
  { route: 'GET /api/feeds', cells: cells(200, 200, 200) },
  { route: 'POST /api/feeds', cells: cells(201, 201, 201), body: () => ({ label: unique('matrix'), type: 'car' }) },
  { route: 'DELETE /api/feeds/{id}', cells: cells(204, 403, 204), params: memberFeed },

  // The change feed is for anyone with a token (members read every allocation anyway); webhooks are admins'.
  { route: 'GET /api/events', cells: cells(200, 200, 200) },
  { route: 'GET /api/webhooks', cells: cells(403, 403, 200) },
  { route: 'POST /api/webhooks', cells: cells(403, 403, 201), body: () => ({ url: 'http://127.0.0.1:9/matrix', types: ['resource.deleted'] }) },
  { route: 'GET /api/webhooks/{id}', cells: cells(403, 403, 200), params: webhook },
  { route: 'PATCH /api/webhooks/{id}', cells: cells(403, 403, 200), params: webhook, body: () => ({ description: unique('matrix') }) },
  { route: 'DELETE /api/webhooks/{id}', cells: cells(403, 403, 204), params: webhook },
  { route: 'POST /api/webhooks/{id}/rotate-secret', cells: cells(403, 403, 200), params: webhook },
  { route: 'GET /api/webhooks/{id}/deliveries', cells: cells(403, 403, 200), params: webhook }
]

const doc = (await call(app, 'GET', '/docs/json')).json<{ paths: Record<string, Record<string, unknown>> }>()
const documented = Object.entries(doc.paths)
  .filter(([path]) => path.startsWith('/api'))
  .flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`))
// What the auth hook registered, in OpenAPI spelling (HEAD routes come with every GET).
const registered = [...app.routeAccess.keys()]
  .filter((route) => !route.startsWith('HEAD '))
  .map((route) => route.replace(/:([a-z_]+)/g, '{$1}'))

t.test('the matrix covers every /api route of the app, and only those', async (t) => {
  const inMatrix = rows.map((row) => row.route)
  t.same([...registered].sort(), [...documented].sort(), 'the OpenAPI document lists every protected route')
  const missing = registered.filter((route) => !inMatrix.includes(route))
  t.same(missing, [], 'every route has a row (add one for each route listed here)')
  t.same(inMatrix.filter((route) => !registered.includes(route)), [], 'no row for a route that does not exist')
  t.equal(new Set(inMatrix).size, inMatrix.length, 'no route twice')
})

t.test('route × caller: the exact status of each cell', async (t) => {
  for (const row of rows) {
    const [method, template] = row.route.split(' ') as [string, string]
    const urlFor = (params: Params) => template.replace(/\{([a-z_]+)\}/g, (_, name: string) => {
      if (params[name] === undefined) throw new Error(`${row.route}: no fixture for {${name}}`)
      return String(params[name])
    }) + (row.query ? `?${row.query}` : '')
    const shared = row.params && !row.paramsPerCell ? await row.params() : {}
    const got: number[] = []
    for (const caller of CALLERS) {
      const url = row.params && row.paramsPerCell ? urlFor(await row.params()) : urlFor(shared)
      const body = row.body?.()
      const res = await app.inject({
        method: method as 'GET',
        url,
        headers: caller.authorization ? { authorization: caller.authorization } : {},
        ...(body === undefined ? {} : { payload: body as object })
      })
      got.push(res.statusCode)
      if (res.statusCode === 401) {
        t.match(res.headers['www-authenticate'], /^Bearer realm="invsys"/, `${row.route}, ${caller.name}: challenge`)
      }
      if (res.statusCode >= 400) {
        t.same(Object.keys(res.json()).sort(), ['code', 'error', 'hint', 'message', 'statusCode'], `${row.route}, ${caller.name}: error body`)
      }
    }
    // One assertion per row, the whole line at once: a failure shows the row as it is and as it should be.
    t.same(got, row.cells, `${row.route}: ${CALLERS.map((c, i) => `${c.name} ${row.cells[i]}`).join(', ')}`)
    const access = app.routeAccess.get(`${method} ${template.replace(/\{([a-z_]+)\}/g, ':$1')}`)
    if (access === 'admin') t.ok(row.cells[4] === 403 && row.cells[5] === 403, `${row.route}: an admin route refuses members`)
  }
})

t.test('the OpenAPI document states the rules: bearer security and 401 on every /api route, 403 where members are refused; none on public routes', async (t) => {
  const typed = doc as unknown as {
    components: { securitySchemes: Record<string, { type: string, scheme: string }> }
    paths: Record<string, Record<string, { security?: unknown, responses: Record<string, unknown> }>>
  }
  t.match(typed.components.securitySchemes.bearerAuth, { type: 'http', scheme: 'bearer' }, 'a bearer scheme: Swagger UI shows Authorize')
  for (const row of rows) {
    const [method, path] = row.route.split(' ') as [string, string]
    const operation = typed.paths[path]![method.toLowerCase()]!
    t.same(operation.security, [{ bearerAuth: [] }], `${row.route}: security`)
    t.ok(operation.responses['401'], `${row.route}: documents 401`)
    if (row.cells.slice(4).includes(403)) t.ok(operation.responses['403'], `${row.route}: documents 403`)
  }
  for (const path of ['/health', '/ready']) {
    t.same(typed.paths[path]!.get!.security, [], `${path} is public: security []`)
  }
})
