import { STATUS_CODES } from 'node:http'
import type { FastifySchema, RouteOptions } from 'fastify'
import { ERROR_CODES_KEYWORD } from '../schemas/common.js'
import { CONSTRAINT_MESSAGES, ERROR_CODES, FOREIGN_KEY_MESSAGES, type ErrorCode } from './errors.js'

/**
 * What makes the OpenAPI document one that validators, linters and code generators
 * accept, for every route there is or will be, with no per-route work:
 *
 * - an onRoute hook: every operation gets an operationId derived from
 *   its method and URL (`listSites`, `createCarAllocation`, `getCarAllocation`), unique
 *   (a duplicate stops the boot) and stable (the same URL always gives the same name);
 *   `config: { operationId }` or `schema: { operationId }` names one by hand.
 * - @fastify/swagger's transform: what only the route's own schema says.
 * - its transformObject: OpenAPI 3.0 schemas (no `examples` keyword,
 *   plain enums, `nullable`), public routes marked `security: []`, success responses
 *   described, named body examples, an example of every error code each status of each
 *   operation can carry, and descriptions that Swagger UI's Markdown shows whole.
 */

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The OpenAPI operationId, when the one derived from method and URL does not fit. */
    operationId?: string
  }
}

// ---------------------------------------------------------------------------------------
// operationIds

/** Plurals that do not end the usual way; every other word is read by its ending. */
const SAME_IN_BOTH = new Set(['series', 'species', 'news'])

function singular (word: string): string {
  if (SAME_IN_BOTH.has(word) || word.includes('.')) return word
  if (/[^aeiou]ies$/.test(word)) return `${word.slice(0, -3)}y`
  if (/(ss|x|ch|sh)es$/.test(word)) return word.slice(0, -2)
  // status, access, analysis: an s that is not a plural ending.
  if (/[^sui]s$/.test(word)) return word.slice(0, -1)
  return word
}

const isPlural = (word: string) => SAME_IN_BOTH.has(word) || singular(word) !== word

/** resource-types → ResourceTypes (the last word singular when asked), calendar.ics → CalendarIcs. */
function pascal (segment: string, makeSingular = false): string {
  const words = segment.split(/[-_.]+/).filter(Boolean)
  if (makeSingular && words.length > 0 && !segment.includes('.')) words[words.length - 1] = singular(words.at(-1)!)
  return words.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('')
}

const camel = (segment: string) => { const p = pascal(segment); return p.charAt(0).toLowerCase() + p.slice(1) }

interface Segment { text: string, param: boolean }

/**
 * The operationId for a method and a URL, from its static segments (`/api` left out):
 * each one followed by a parameter names one thing (singular), the last one names a
 * collection or, for a POST to a singular word, an action.
 *
 * GET /api/sites (an array) → listSites · POST /api/sites → createSite · GET /api/sites/:id
 * → getSite · PUT → replaceSite · PATCH → updateSite · DELETE → deleteSite ·
 * POST /api/cars/:id/allocations → createCarAllocation · POST …/allocations/:id/confirm
 * → confirmCarAllocation · GET /api/me → getMe · GET /feeds/:secret.ics → getFeedIcs.
 */
export function deriveOperationId (method: string, url: string, returnsArray: boolean): string {
  const parts = url.split('/').filter(Boolean)
  if (parts[0] === 'api') parts.shift()
  const segments: Segment[] = parts.map((part) => {
    if (!part.startsWith(':')) return { text: part, param: false }
    // A parameter with a static tail (`:secret.ics`) keeps the tail as a word.
    return { text: part.replace(/^:[A-Za-z0-9_]+(\([^)]*\))?/, ''), param: true }
  })
  const nouns = segments.map((segment, i) => {
    if (segment.param) return pascal(segment.text)
    return pascal(segment.text, segments[i + 1]?.param === true)
  })
  const last = segments.at(-1)
  const verb = method.toLowerCase()
  const noun = (words: string[]) => words.join('') || 'Root'
  if (last === undefined || last.param) {
    const verbs: Record<string, string> = { get: 'get', put: 'replace', patch: 'update', delete: 'delete', post: 'create' }
    return `${verbs[verb] ?? verb}${noun(nouns)}`
  }
  switch (verb) {
    case 'get': return `${returnsArray ? 'list' : 'get'}${noun(nouns)}`
    case 'post':
      if (isPlural(last.text)) return `create${noun([...nouns.slice(0, -1), pascal(last.text, true)])}`
      // POST …/:id/confirm: the last word is what is done to the thing before it.
      return `${camel(last.text)}${noun(nouns.slice(0, -1))}`
    case 'put': return `replace${noun(nouns)}`
    case 'patch': return `update${noun(nouns)}`
    default: return `${verb}${noun(nouns)}`
  }
}

const OPERATION_ID = /^[A-Za-z][A-Za-z0-9_]*$/

function returnsArray (schema: FastifySchema | undefined): boolean {
  const response = schema?.response as Record<string, { type?: unknown }> | undefined
  const success = response?.['200'] ?? response?.['201']
  return success?.type === 'array'
}

/** Codes a route names for a status must exist and have that status, or the boot stops. */
function checkErrorCodes (route: RouteOptions): void {
  const response = route.schema?.response as Record<string, Record<string, unknown>> | undefined
  for (const [status, schema] of Object.entries(response ?? {})) {
    const codes = schema?.[ERROR_CODES_KEYWORD] as string[] | undefined
    for (const code of codes ?? []) {
      const known = (ERROR_CODES as Record<string, { status: number }>)[code]
      if (!known) throw new Error(`${String(route.method)} ${route.url}: ${code} is not in ERROR_CODES (plugins/errors.ts)`)
      if (String(known.status) !== status) throw new Error(`${String(route.method)} ${route.url}: ${code} is a ${known.status}, not a ${status}`)
    }
  }
}

/**
 * An onRoute hook: names every documented operation and refuses a name that is taken,
 * so two routes can never share one in the document. `routes` keeps each route by its
 * name, for the finishing pass.
 */
function nameOperations (routes: Map<string, RouteOptions>): (route: RouteOptions) => void {
  const taken = new Map<string, string>()
  return (route) => {
    const methods = [route.method].flat().filter((m) => m !== 'HEAD')
    const schema = route.schema
    if (methods.length === 0 || schema?.hide) return
    checkErrorCodes(route)
    const where = `${methods.join(',')} ${route.url}`
    if (methods.length > 1) throw new Error(`${where}: declare one route per method, so that each has its own operationId`)
    const operationId = schema?.operationId ?? route.config?.operationId ?? deriveOperationId(methods[0]!, route.url, returnsArray(schema))
    if (!OPERATION_ID.test(operationId)) throw new Error(`${where}: operationId "${operationId}" must be a letter followed by letters, digits or _`)
    const other = taken.get(operationId)
    if (other !== undefined) {
      throw new Error(`${where}: operationId ${operationId} is already ${other}'s; name one of them with config: { operationId }`)
    }
    taken.set(operationId, where)
    routes.set(operationId, route)
    route.schema = { ...schema, operationId }
  }
}

// ---------------------------------------------------------------------------------------
// The route's schema, before @fastify/swagger turns it into an operation

/**
 * A query parameter with a default (limit, offset, status) may be left out, although
 * its TypeBox schema lists it as required so that handlers see it filled in. The
 * document says what a client may send: such parameters are optional there.
 */
function documentRoute ({ schema, url }: { schema: FastifySchema, url: string }) {
  const query = schema?.querystring as { properties?: Record<string, { default?: unknown }>, required?: string[] } | undefined
  if (!query?.required || !query.properties) return { schema, url }
  const required = query.required.filter((name) => query.properties?.[name]?.default === undefined)
  return { schema: { ...schema, querystring: { ...query, required } }, url }
}

// ---------------------------------------------------------------------------------------
// The whole document

/* eslint-disable @typescript-eslint/no-explicit-any -- the document is plain JSON walked by shape */
type Json = Record<string, any>

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace']

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value)

/** Keywords that say something about a schema without restricting its values. */
const ANNOTATIONS = new Set(['description', 'title', 'default', 'example', 'deprecated', 'readOnly', 'writeOnly'])

/** @fastify/swagger's spelling of "null and nothing else" in OpenAPI 3.0. */
const isNullOnly = (schema: Json) => schema.nullable === true && Array.isArray(schema.enum) && schema.enum.length === 1 && schema.enum[0] === null

/** `{type: string, enum: [x]}` (TypeBox's Literal), with nothing else but annotations. */
function literalType (schema: Json): string | undefined {
  if (!Array.isArray(schema.enum) || typeof schema.type !== 'string' || schema.nullable) return undefined
  return Object.keys(schema).every((key) => key === 'type' || key === 'enum' || ANNOTATIONS.has(key)) ? schema.type : undefined
}

function outerAnnotations (schema: Json, combinator: string): Json {
  return Object.fromEntries(Object.entries(schema).filter(([key]) => key !== combinator))
}

/**
 * One schema in OpenAPI 3.0's dialect, its subschemas first: `examples` (JSON Schema)
 * becomes `example`; a union of literals (TypeBox's Union of Literal) becomes one plain
 * enum, which every generator turns into a union type or an enum; a union with null
 * becomes the member with `nullable: true` (the union's own description winning), and a
 * union of several shapes with null the shapes, `nullable: true`.
 */
function normalizeSchema (schema: unknown): void {
  if (!isObject(schema)) return
  for (const key of ['properties', 'patternProperties']) {
    if (isObject(schema[key])) for (const sub of Object.values(schema[key])) normalizeSchema(sub)
  }
  for (const key of ['items', 'additionalProperties', 'not']) normalizeSchema(schema[key])
  for (const key of ['anyOf', 'oneOf', 'allOf']) {
    if (Array.isArray(schema[key])) for (const sub of schema[key]) normalizeSchema(sub)
  }
  if (Array.isArray(schema.examples)) {
    if (schema.example === undefined && schema.examples.length > 0) schema.example = schema.examples[0]
    delete schema.examples
  }
  for (const combinator of ['anyOf', 'oneOf']) {
    const members = schema[combinator]
    if (!Array.isArray(members) || members.length === 0) continue
    const nonNull = members.filter((m: Json) => !isNullOnly(m))
    const nullable = nonNull.length < members.length
    const types = new Set(nonNull.map(literalType))
    let merged: Json | undefined
    if (nonNull.length > 0 && types.size === 1 && !types.has(undefined)) {
      merged = { type: [...types][0], enum: [...new Set(nonNull.flatMap((m: Json) => m.enum))] }
    } else if (nonNull.length === 1 && nullable && typeof nonNull[0].type === 'string') {
      merged = { ...nonNull[0] }
    }
    if (!merged) {
      // A union of several shapes and null (an event's data: an allocation, a resource or
      // null): the shapes, nullable; OpenAPI 3.0 reads nullable only beside a type.
      if (nullable && nonNull.length > 1) {
        schema[combinator] = nonNull
        schema.nullable = true
        const types = new Set(nonNull.map((member) => member.type))
        if (types.size === 1 && typeof nonNull[0].type === 'string') schema.type = nonNull[0].type
      }
      continue
    }
    delete schema[combinator]
    Object.assign(schema, merged, outerAnnotations(schema, combinator))
    if (nullable) {
      schema.nullable = true
      // OpenAPI 3.0: an enum must list null itself for a nullable enum to take it.
      if (Array.isArray(schema.enum) && !schema.enum.includes(null)) schema.enum.push(null)
    }
  }
}

/**
 * Swagger UI reads descriptions as Markdown, where `<token>` is an HTML tag and vanishes.
 * A quoted phrase holding such a placeholder becomes code; a lone placeholder too, with
 * the path it is part of.
 */
export function escapePlaceholders (text: string): string {
  return text
    .replace(/"([^"`]*<[A-Za-z][\w .…-]*>[^"`]*)"/g, '`$1`')
    // A placeholder inside a path (/api/<plural>) takes the whole path into the code span.
    .replace(/(`[^`]*`)|([\w/{}.-]*)<([A-Za-z][\w .…-]*)>((?:[\w/{}-]|\.(?=\w))*)/g,
      (match, code: string | undefined, before: string, name: string, after: string) => code ?? `\`${before}<${name}>${after}\``)
}

function escapeDescriptions (node: unknown, inSchema = false): void {
  if (Array.isArray(node)) {
    for (const item of node) escapeDescriptions(item, inSchema)
    return
  }
  if (!isObject(node)) return
  for (const [key, value] of Object.entries(node)) {
    // Examples, defaults and enums are data: a field named description in an example stays as it is.
    if (key === 'example' || key === 'examples' || key === 'default' || key === 'enum' || key === 'value') continue
    if (key === 'description' && typeof value === 'string') node[key] = escapePlaceholders(value)
    else escapeDescriptions(value, inSchema)
  }
}

type Operation = Json & { responses?: Record<string, Json> }

function * operations (doc: Json): Generator<{ path: string, method: string, operation: Operation }> {
  for (const [path, item] of Object.entries<Json>(doc.paths ?? {})) {
    for (const method of METHODS) {
      if (isObject(item[method])) yield { path, method, operation: item[method] }
    }
  }
}

function * schemasOf (operation: Operation): Generator<Json> {
  for (const parameter of operation.parameters ?? []) if (isObject(parameter.schema)) yield parameter.schema
  for (const media of Object.values<Json>(operation.requestBody?.content ?? {})) if (isObject(media.schema)) yield media.schema
  for (const response of Object.values<Json>(operation.responses ?? {})) {
    for (const media of Object.values<Json>(response.content ?? {})) if (isObject(media.schema)) yield media.schema
    for (const header of Object.values<Json>(response.headers ?? {})) if (isObject(header.schema)) yield header.schema
  }
}

const pages = (operation: Operation) => (operation.parameters ?? []).some((p: Json) => p.in === 'query' && p.name === 'limit')

const LINK_HEADER = {
  description: 'When another page may follow: `<path?…&offset=N>; rel="next"` (RFC 8288), with the same filters',
  schema: { type: 'string' }
}
const LOCATION_HEADER = { description: 'The path of what was created', schema: { type: 'string' } }
const CHALLENGE_HEADER = { description: 'Bearer realm="invsys", with error="invalid_token" for INVALID_TOKEN (RFC 6750)', schema: { type: 'string' } }
const RETRY_AFTER_HEADER = { description: 'Seconds to wait before trying again (with DATABASE_UNAVAILABLE, OUTCOME_UNKNOWN and IDEMPOTENCY_KEY_IN_USE)', schema: { type: 'integer' } }

/** What a success says, when the route's schema does not say it itself. */
function describeSuccess (method: string, status: string, operation: Operation, isArray: boolean): string {
  if (status === '201') return 'Created: the new item as stored; the Location header gives its path'
  if (status === '204') return 'Done: no content'
  if (isArray) return pages(operation) ? 'One page of the collection, at most `limit` items' : 'The collection'
  switch (method) {
    case 'get': return 'OK: the representation asked for'
    case 'put': return 'Replaced: the item as stored now'
    case 'patch': return 'Changed: the item as stored now'
    default: return 'Done: the item as stored now'
  }
}

/**
 * A schema's own example, moved up to its media type (where every tool looks for it),
 * as the one item of a list for an array. Examples nested deeper stay where they are.
 */
function liftExample (media: Json): void {
  const schema = media.schema
  if (!isObject(schema) || media.example !== undefined || media.examples !== undefined) return
  if (schema.example !== undefined) {
    media.example = schema.example
    delete schema.example
  } else if (isObject(schema.items) && schema.items.example !== undefined) {
    media.example = [schema.items.example]
    delete schema.items.example
  }
}

function documentSuccess (method: string, status: string, response: Json, operation: Operation): void {
  const schema = response.content?.['application/json']?.schema
  const isArray = schema?.type === 'array'
  if (response.description === 'Default Response' || !response.description) {
    response.description = describeSuccess(method, status, operation, isArray)
  }
  for (const media of Object.values<Json>(response.content ?? {})) liftExample(media)
  if (status === '201') response.headers = { Location: LOCATION_HEADER, ...response.headers }
  if (isArray && pages(operation)) response.headers = { Link: LINK_HEADER, ...response.headers }
}

/** Messages the API really sends, for the examples; others show their meaning. */
const EXAMPLE_MESSAGES: Partial<Record<ErrorCode, string>> = {
  INVALID_VALUE: 'date/time field value out of range: "30000-01-01T00:00:00Z"',
  UNAUTHENTICATED: 'this route needs a token: send "Authorization: Bearer <token>"',
  INVALID_TOKEN: 'the token is unknown or has been revoked',
  ALLOCATION_CONFLICT: 'the resource is already allocated during that time (1 overlapping allocation)',
  ALLOCATION_CANCELLED: 'the allocation is cancelled; create a new one instead',
  ALREADY_CONFIRMED: 'the allocation is already confirmed',
  HOLD_EXPIRED: 'the hold expired at 2030-06-01T09:10:00Z; create a new one instead',
  STATUS_TRANSITION: 'the allocation cannot change to that status',
  NO_AVAILABILITY: 'no car at site 1 is free for that whole time',
  DUPLICATE: 'name is already used by another resource of this type',
  IN_USE: 'the resource has 1 allocation that has not ended; cancel it first or delete with ?force=true',
  REFERENCE_NOT_FOUND: 'site_id does not name an existing site',
  CONCURRENT_UPDATE: 'a concurrent change touched the same rows; retry the request',
  IDEMPOTENCY_KEY_IN_USE: 'a request with this Idempotency-Key is still running; retry shortly to get its response',
  PAYLOAD_TOO_LARGE: 'Request body is too large',
  UNSUPPORTED_MEDIA_TYPE: 'Unsupported Media Type: text/plain',
  IDEMPOTENCY_KEY_REUSED: 'the Idempotency-Key was already used with a different body for this route; use a new key',
  DATABASE_UNAVAILABLE: 'the database cannot be reached; try again shortly',
  OUTCOME_UNKNOWN: 'the connection to the database was lost after the change was sent: it may or may not have been stored; retry with the same Idempotency-Key, or read before retrying'
}

const bodySchema = (operation: Operation): Json | undefined => operation.requestBody?.content?.['application/json']?.schema
const parametersOf = (operation: Operation): Json[] => operation.parameters ?? []

/** A validation message naming a field this operation really has. */
function validationMessage (operation: Operation): string {
  const body = bodySchema(operation)
  const required = body?.required?.[0]
  if (typeof required === 'string') return `body/${required} is required`
  const path = parametersOf(operation).find((p) => p.in === 'path')
  if (path) return `params/${path.name} must be ${path.schema?.format === 'uuid' ? 'a valid uuid' : `${path.schema?.type ?? 'valid'}`}`
  if (parametersOf(operation).some((p) => p.in === 'query' && p.name === 'limit')) return 'querystring/limit must be <= 1000'
  const query = parametersOf(operation).find((p) => p.in === 'query')
  if (query) return `querystring/${query.name} is invalid`
  return `body/${Object.keys(body?.properties ?? {})[0] ?? 'x'} is not an accepted property`
}

/**
 * What the database says about a field of this body, in the API's words (the tables of
 * plugins/errors.ts): a constraint's message that starts with one of the body's fields,
 * preferring constraints of the table the path names.
 */
function databaseMessage (path: string, operation: Operation, messages: Array<[constraint: string, message: string]>): string | undefined {
  const fields = Object.keys(bodySchema(operation)?.properties ?? {})
  const table = singular(path.split('/').filter(Boolean)[1] ?? '')
  const fitting = messages.filter(([, message]) => fields.includes(message.split(' ')[0]!))
  return (fitting.find(([constraint]) => constraint.startsWith(`${table}_`)) ?? fitting[0])?.[1]
}

const uniqueness = Object.entries(CONSTRAINT_MESSAGES).filter(([, m]) => m.includes('already used'))
const checks = Object.entries(CONSTRAINT_MESSAGES).filter(([, m]) => !m.includes('already used'))
const references = Object.entries(FOREIGN_KEY_MESSAGES).map(([constraint, { missing }]): [string, string] => [constraint, missing])

function notFoundMessage (path: string, operation: Operation): string {
  const parts = path.split('/').filter(Boolean)
  const param = parts.map((part) => part.startsWith('{')).lastIndexOf(true)
  if (param <= 0) return `no route GET ${path}`
  const name = parts[param]!.slice(1, -1)
  const parameter = parametersOf(operation).find((p) => p.in === 'path' && p.name === name)
  const id = parameter?.example ?? (parameter?.schema?.type === 'integer' ? 1 : '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90')
  return `no ${singular(parts[param - 1]!).replace(/-/g, ' ')} with id ${String(id)}`
}

function forbiddenMessage (path: string, operation: Operation, route: RouteOptions | undefined): string | undefined {
  if (route?.config?.access === 'admin') return `${String(route.method)} ${route.url} is for admins only`
  if (path.endsWith('/allocations') && operation.requestBody) return 'only admins may create maintenance allocations; members book with kind booking'
  if (path.includes('/allocations')) return 'the allocation belongs to another account: only its owner or an admin may change, confirm or cancel it'
  return undefined
}

/** Whether a date-time reaches the database from this operation's input. */
function takesTimes (operation: Operation): boolean {
  const formats = [
    ...parametersOf(operation).map((p) => p.schema?.format),
    ...Object.values<Json>(bodySchema(operation)?.properties ?? {}).map((p) => p.format)
  ]
  return formats.includes('date-time')
}

/** Codes a status may carry where the route names none: those of ERROR_CODES that fit what the operation takes. */
function defaultCodes (status: number, operation: Operation): string[] {
  const hasBody = operation.requestBody !== undefined
  return Object.entries(ERROR_CODES)
    .filter(([, entry]) => entry.status === status)
    .map(([code]) => code)
    .filter((code) => {
      if (code === 'VALIDATION_ERROR') return hasBody || parametersOf(operation).length > 0
      if (code === 'CONSTRAINT_VIOLATION') return hasBody
      if (code === 'INVALID_VALUE') return takesTimes(operation)
      return true
    })
}

function exampleMessage (code: string, path: string, operation: Operation, route: RouteOptions | undefined): string {
  const meaning = (ERROR_CODES as Record<string, { meaning: string }>)[code]?.meaning ?? code
  switch (code) {
    case 'VALIDATION_ERROR': return validationMessage(operation)
    case 'BAD_REQUEST': return operation.requestBody
      ? 'Body is not valid JSON but content-type is set to \'application/json\''
      : `'${path.replace(/\{[^}]+\}/, '%zz')}' is not a valid url component`
    case 'CONSTRAINT_VIOLATION': return databaseMessage(path, operation, checks) ?? meaning
    case 'DUPLICATE': return databaseMessage(path, operation, uniqueness) ?? EXAMPLE_MESSAGES.DUPLICATE!
    case 'REFERENCE_NOT_FOUND': return databaseMessage(path, operation, references) ?? EXAMPLE_MESSAGES.REFERENCE_NOT_FOUND!
    case 'IN_USE': return path.startsWith('/api/sites') ? FOREIGN_KEY_MESSAGES.resource_site_id_fkey!.inUse : EXAMPLE_MESSAGES.IN_USE!
    case 'NOT_FOUND': return notFoundMessage(path, operation)
    case 'FORBIDDEN': return forbiddenMessage(path, operation, route) ?? meaning
  }
  return EXAMPLE_MESSAGES[code as ErrorCode] ?? meaning
}

/**
 * The error statuses of an operation: an example of each code the route can answer
 * with that status (the codes it names, or those of the status that fit it), and the
 * schema's own stand-in examples (a VALIDATION_ERROR under every status) removed.
 */
function documentError (status: string, response: Json, path: string, operation: Operation, route: RouteOptions | undefined): void {
  const media = response.content?.['application/json']
  const schema = media?.schema
  if (!isObject(schema) || !isObject(schema.properties) || !schema.properties.code) return
  const named: string[] | undefined = schema[ERROR_CODES_KEYWORD]
  delete schema[ERROR_CODES_KEYWORD]
  const codes = named ?? defaultCodes(Number(status), operation)
  if (schema.description === response.description) delete schema.description
  // A status common.ts has no sentence for (a route's own 422, say) is at least named.
  if (!response.description || response.description === 'Default Response') response.description = STATUS_CODES[Number(status)] ?? 'Error'
  for (const property of Object.values<Json>(schema.properties)) delete property.example
  schema.properties.statusCode = { ...schema.properties.statusCode, description: 'The HTTP status, again' }
  schema.properties.code = { ...schema.properties.code, description: 'What happened: branch on it (each code has one status)' }
  schema.properties.message = { ...schema.properties.message, description: 'For people: names the field or the thing; its wording may change' }
  schema.properties.hint = { ...schema.properties.hint, description: 'For people: what to do about it (the same for every error of this code)' }
  // The plain error body is one named schema for every status; the codes are said per response.
  if (schema.title === undefined && Object.keys(schema.properties).join() === 'statusCode,code,error,message,hint') schema.title = 'Error'
  if (codes.length > 0) response.description = `${response.description ?? STATUS_CODES[Number(status)]}; codes: ${codes.join(', ')}`
  const conflict = schema.properties.conflicts?.items?.example
  if (status === '401') response.headers = { 'WWW-Authenticate': CHALLENGE_HEADER, ...response.headers }
  if (status === '503' || codes.includes('IDEMPOTENCY_KEY_IN_USE')) response.headers = { 'Retry-After': RETRY_AFTER_HEADER, ...response.headers }
  delete media.example
  media.examples = Object.fromEntries(codes.map((code) => {
    const { meaning, action } = (ERROR_CODES as Record<string, { meaning: string, action: string } | undefined>)[code] ?? {}
    return [code, {
      summary: meaning ? `${code}: ${meaning}` : code,
      value: {
        statusCode: Number(status),
        code,
        error: STATUS_CODES[Number(status)] ?? 'Error',
        message: exampleMessage(code, path, operation, route),
        ...(action ? { hint: action } : {}),
        ...(code === 'ALLOCATION_CONFLICT' && schema.properties.conflicts ? { conflicts: conflict ? [conflict] : [] } : {})
      }
    }]
  }))
}

/** What tells one example from the others: the fields it alone has, else those it gives another value. */
function distinguishing (value: unknown, others: unknown[]): string {
  if (!isObject(value)) return JSON.stringify(value)
  const entries = Object.entries(value)
  const own = entries.filter(([key]) => others.every((other) => !isObject(other) || !(key in other)))
  const changed = entries.filter(([key, v]) => others.some((other) => isObject(other) && JSON.stringify(other[key]) !== JSON.stringify(v)))
  const fields = (own.length > 0 ? own : changed).slice(0, 3)
  const said = fields.map(([key, v]) => (typeof v === 'object' && v !== null ? key : `${key} ${String(v)}`))
  return said.length > 0 ? `with ${said.join(', ')}` : 'another value'
}

/** Request bodies: named examples, each with a summary, in place of bare values. */
function documentBody (operation: Operation): void {
  for (const media of Object.values<Json>(operation.requestBody?.content ?? {})) {
    const label = operation.summary ?? operation.operationId ?? 'Example'
    if (media.example !== undefined && media.examples === undefined) {
      media.examples = { example: { summary: label, value: media.example } }
      delete media.example
    } else if (isObject(media.examples)) {
      const entries = Object.entries<Json>(media.examples)
      const values = entries.map(([, example]) => example.value)
      for (const [i, [, example]] of entries.entries()) {
        example.summary ??= entries.length === 1 ? label : `${label}: ${distinguishing(values[i], values.filter((_, j) => j !== i))}`
      }
    }
  }
}

/** A schema as JSON with its examples left out: two uses of one named schema differ only there. */
const withoutExamples = (schema: unknown): string => JSON.stringify(schema, (key, value) => (key === 'example' ? undefined : value))

/**
 * Schemas with a `title` (the TypeBox schemas of representations and bodies: Allocation,
 * SiteInput, …) become components that operations refer to, so that a generator makes one
 * named type of each rather than one per operation. A use that differs from the first one
 * (it should not) stays inline.
 */
function hoistNamed (schema: unknown, components: Record<string, Json>): unknown {
  if (!isObject(schema)) return schema
  for (const key of ['properties', 'patternProperties']) {
    if (isObject(schema[key])) for (const [name, sub] of Object.entries(schema[key])) schema[key][name] = hoistNamed(sub, components)
  }
  for (const key of ['items', 'additionalProperties', 'not']) if (isObject(schema[key])) schema[key] = hoistNamed(schema[key], components)
  for (const key of ['anyOf', 'oneOf', 'allOf']) {
    if (Array.isArray(schema[key])) schema[key] = schema[key].map((sub: unknown) => hoistNamed(sub, components))
  }
  const name = schema.title
  if (typeof name !== 'string' || !/^[A-Za-z][A-Za-z0-9_]*$/.test(name)) return schema
  const known = components[name]
  if (known === undefined) components[name] = schema
  else if (withoutExamples(known) !== withoutExamples(schema)) return schema
  return { $ref: `#/components/schemas/${name}` }
}

/** The finishing pass over the whole document; `routes` are the app's, by operationId. */
function finishDocument (openapiObject: object, routes: Map<string, RouteOptions>): Json {
  const doc = structuredClone(openapiObject) as Json
  for (const { path, method, operation } of operations(doc)) {
    const route = routes.get(operation.operationId)
    for (const schema of schemasOf(operation)) normalizeSchema(schema)
    for (const parameter of operation.parameters ?? []) {
      // Parameters carry their example next to the schema; one inside it would be said twice.
      if (parameter.example !== undefined) delete parameter.schema?.example
    }
    // Outside /api nothing asks for a token: say so, rather than leave it unsaid.
    if (!path.startsWith('/api/') && operation.security === undefined) operation.security = []
    // Who may call it, for generated documentation (docs/api.md) and tools: admins, or any token.
    const access = route?.config?.access
    if (access !== undefined) operation['x-access'] = access
    for (const media of Object.values<Json>(operation.requestBody?.content ?? {})) liftExample(media)
    documentBody(operation)
    for (const [status, response] of Object.entries<Json>(operation.responses ?? {})) {
      if (/^2\d\d$/.test(status)) documentSuccess(method, status, response, operation)
      else if (/^[45]\d\d$/.test(status)) documentError(status, response, path, operation, route)
    }
  }
  for (const schema of Object.values<Json>(doc.components?.schemas ?? {})) normalizeSchema(schema)
  doc.components = { ...doc.components, schemas: { ...doc.components?.schemas } }
  for (const { operation } of operations(doc)) {
    for (const holder of [...Object.values<Json>(operation.requestBody?.content ?? {}), ...Object.values<Json>(operation.responses ?? {})
      .flatMap((response) => Object.values<Json>(response.content ?? {}))]) {
      if (isObject(holder.schema)) holder.schema = hoistNamed(holder.schema, doc.components.schemas)
    }
  }
  escapeDescriptions(doc)
  return doc
}

/**
 * The hooks, sharing what one app's routes are: `onRoute` and `onReady` for app.addHook, and
 * `transform` and `transformObject` for @fastify/swagger's options.
 */
export function openapiDocumenter () {
  const routes = new Map<string, RouteOptions>()
  return {
    onRoute: nameOperations(routes),
    // Plugins add responses after a route's own hook ran: their codes are checked once all are in.
    onReady: async () => { for (const route of routes.values()) checkErrorCodes(route) },
    transform: documentRoute,
    transformObject: (document: { swaggerObject: object } | { openapiObject: object }) =>
      finishDocument('openapiObject' in document ? document.openapiObject : document.swaggerObject, routes)
  }
}
