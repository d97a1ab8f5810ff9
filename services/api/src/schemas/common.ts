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
  message: Type.String({ examples: ['body/name must NOT have fewer than 1 characters'] })
}, { additionalProperties: true })

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid input: the message names the field',
  401: 'No token, or a malformed, unknown or revoked one (with a WWW-Authenticate: Bearer challenge)',
  403: 'The token is valid, but its account may not do this',
  404: 'No such thing',
  409: 'Conflict: a duplicate, a thing still in use, or an overlapping allocation',
  413: 'Body too large',
  415: 'Unsupported content type (send application/json)',
  422: 'The Idempotency-Key was already used with a different body',
  503: 'The database cannot be reached'
}

/** Response entries for the error statuses a route can answer, all with the shared error body. */
export function errorResponses (...statuses: number[]): Record<number, TSchema> {
  const responses: Record<number, TSchema> = {}
  for (const status of statuses) {
    responses[status] = Type.Object(ErrorBody.properties, { additionalProperties: true, description: ERROR_DESCRIPTIONS[status] })
  }
  return responses
}

/** Errors any route that reads the database may answer; writes add 413 and 415. */
export const READ_ERRORS = [400, 503]
export const WRITE_ERRORS = [400, 413, 415, 503]

export const NoContent = Type.Null({ description: 'No content' })
