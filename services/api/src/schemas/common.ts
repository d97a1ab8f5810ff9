import { Type, type TSchema } from '@sinclair/typebox'

export const Uuid = Type.String({ format: 'uuid', examples: ['5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90'] })

export const SiteId = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, examples: [1] })

export const DateTime = Type.String({
  format: 'date-time',
  description: 'RFC 3339 date-time with an offset (Z or ±hh:mm), in years 0001 to 9999 once in UTC; replies are in UTC with Z',
  examples: ['2030-06-01T09:00:00Z']
})

export function Nullable<T extends TSchema> (schema: T) {
  return Type.Union([schema, Type.Null()])
}

/** Free text columns: bounded so one field cannot fill the body limit by itself. */
export const Text = (maxLength = 1000) => Type.String({ maxLength })

export const Name = Type.String({ minLength: 1, maxLength: 200, pattern: '\\S' })

export const PageQuery = {
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'Page size (1 to 1000)' }),
  offset: Type.Integer({ minimum: 0, maximum: 2147483647, default: 0, description: 'Items to skip' })
}

export const ErrorBody = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String({ examples: ['VALIDATION_ERROR'] }),
  error: Type.String({ examples: ['Bad Request'] }),
  message: Type.String({ examples: ['body/name must NOT have fewer than 1 characters'] }),
  hint: Type.String({ examples: ['fix the field the message names (the OpenAPI document gives each field\'s rules) and send again'] })
}, { additionalProperties: true })

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid input: the message names the field',
  401: 'No token, or a malformed, unknown or revoked one (with a WWW-Authenticate: Bearer challenge)',
  403: 'The token is valid, but its account may not do this',
  404: 'No such thing',
  409: 'Conflict: a duplicate, a thing still in use, or an overlapping allocation',
  410: 'Gone: the change feed no longer keeps events that far back',
  413: 'Body too large',
  415: 'Unsupported content type (send application/json)',
  422: 'The Idempotency-Key was already used with a different body',
  503: 'The database cannot be reached'
}

/**
 * The error codes a response can carry, where a route can name them: `{ 409: ['IN_USE'] }`.
 * A status named without codes may carry any code of that status (plugins/errors.ts).
 */
export type ErrorCodes = Readonly<Record<number, readonly string[]>>

/**
 * The schema keyword that carries a response's codes to the OpenAPI document, which
 * shows an example of each (and checks at boot that each has that status).
 */
export const ERROR_CODES_KEYWORD = 'x-error-codes'

function errorResponse (status: number, codes: readonly string[] | undefined): TSchema {
  return Type.Object(ErrorBody.properties, {
    additionalProperties: true,
    description: ERROR_DESCRIPTIONS[status],
    ...(codes ? { [ERROR_CODES_KEYWORD]: [...codes] } : {})
  })
}

/** `schema` (an error body of its own, such as one with `conflicts`) carrying `codes`. */
export function withErrorCodes<T extends TSchema> (schema: T, codes: readonly string[]): T {
  return { ...schema, [ERROR_CODES_KEYWORD]: [...codes] }
}

const codesOf = (schema: TSchema | undefined): string[] | undefined => schema?.[ERROR_CODES_KEYWORD] as string[] | undefined

/**
 * Response entries for the error statuses a route can answer, all with the shared error
 * body: statuses (`404`), or statuses with the codes the route can answer with them
 * (`{ 409: ['DUPLICATE', 'REFERENCE_NOT_FOUND'] }`), which then replace "any code".
 */
export function errorResponses (...entries: Array<number | ErrorCodes>): Record<number, TSchema> {
  const responses: Record<number, TSchema> = {}
  for (const entry of entries) {
    const named: Record<number, readonly string[] | undefined> = typeof entry === 'number' ? { [entry]: undefined } : entry
    for (const [key, codes] of Object.entries(named)) {
      const status = Number(key)
      const before = codesOf(responses[status])
      if (codes === undefined && responses[status]) continue
      responses[status] = errorResponse(status, codes && [...new Set([...(before ?? []), ...codes])])
    }
  }
  return responses
}

/**
 * A route's responses with `added` (a plugin's: auth's 401, idempotency's 409 and 422)
 * merged in: the route's own schema is kept, and its codes gain the added ones; a status
 * the route names without codes already allows them all.
 */
export function mergeErrorResponses (own: Record<number, TSchema> | undefined, added: Record<number, TSchema>): Record<number, TSchema> {
  const merged: Record<number, TSchema> = { ...added, ...own }
  for (const [key, schema] of Object.entries(added)) {
    const status = Number(key)
    const mine = own?.[status]
    const codes = codesOf(mine)
    if (!mine || !codes) continue
    merged[status] = withErrorCodes(mine, [...new Set([...codes, ...(codesOf(schema) ?? [])])])
  }
  return merged
}

/** Errors any route that reads the database may answer; writes add 413 and 415. */
export const READ_ERRORS = [400, 503]
export const WRITE_ERRORS = [400, 413, 415, 503]

export const NoContent = Type.Null({ description: 'No content' })
