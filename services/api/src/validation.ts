import { Ajv, type Options } from 'ajv'
import addFormatsModule from 'ajv-formats'
import type { FastifySchema, FastifySchemaCompiler } from 'fastify'
import type { FastifySchemaValidationError } from 'fastify/types/schema.js'

// ajv-formats is CommonJS with a default export; under NodeNext it arrives wrapped.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default

const rfc3339 = addFormats.get('date-time') as { validate: (value: string) => boolean }

const DATE_TIME = /^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.\d+)?(?:[Zz]|([+-])(\d\d):(\d\d))$/
const EARLIEST = Date.parse('0001-01-01T00:00:00Z')
const AFTER_LATEST = Date.parse('+010000-01-01T00:00:00Z')

/**
 * The times the API takes: RFC 3339 with an offset, whose instant in UTC falls in years
 * 1 to 9999. 0001-01-01T00:00:00+14:00 is a valid RFC 3339 string for a time in 1 BC,
 * and 9999-12-31T23:00:00-14:00 one in the year 10000: PostgreSQL would store either,
 * but neither can be written back in RFC 3339 (nor in iCalendar), so they are refused here.
 */
function isApiDateTime (value: string): boolean {
  if (!rfc3339.validate(value)) return false
  const match = DATE_TIME.exec(value)
  if (!match) return false
  const [, year, month, day, hour, minute, second, sign, offsetHours, offsetMinutes] = match
  // Only the first and last year can cross the edge through the offset.
  if (year !== '0001' && year !== '9999') return year !== '0000'
  const time = new Date(0)
  // setUTCFullYear, unlike Date.UTC, does not read years below 100 as 19xx. A leap
  // second (…:60) is the next minute's start, as PostgreSQL reads it.
  time.setUTCFullYear(Number(year), Number(month) - 1, Number(day))
  time.setUTCHours(Number(hour), Number(minute), Number(second))
  const offset = sign === undefined ? 0 : (sign === '-' ? -1 : 1) * (Number(offsetHours) * 60 + Number(offsetMinutes))
  const utc = time.getTime() - offset * 60_000
  return utc >= EARLIEST && utc < AFTER_LATEST
}

function ajv (options: Options): Ajv {
  const instance = new Ajv({ removeAdditional: false, useDefaults: true, allErrors: false, strict: false, ...options })
  addFormats(instance)
  instance.addFormat('date-time', { type: 'string', validate: isApiDateTime })
  return instance
}

/**
 * Bodies are JSON and must arrive with the right types (`"name": 123` is refused, not
 * turned into "123"); query strings and path parameters are text and are coerced.
 * Unknown properties are refused everywhere rather than stripped.
 */
export function createValidatorCompiler (): FastifySchemaCompiler<FastifySchema> {
  const strict = ajv({ coerceTypes: false })
  const coercing = ajv({ coerceTypes: 'array' })
  return ({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema as object)
}

/** Ajv's messages, reworded where they would not name the field or say what is expected. */
function describe (error: FastifySchemaValidationError, context: string): string {
  const field = `${context}${error.instancePath}`
  const params = error.params
  switch (error.keyword) {
    case 'additionalProperties':
      return `${field}/${String(params.additionalProperty)} is not an accepted property`
    case 'required':
      return `${field}/${String(params.missingProperty)} is required`
    case 'format':
      if (params.format === 'date-time') {
        return `${field} must be an RFC 3339 date-time with an offset, in years 0001 to 9999 once in UTC, such as 2030-06-01T09:00:00Z or 2030-06-01T11:00:00+02:00`
      }
      return `${field} must be a valid ${String(params.format)}`
    case 'enum':
      return `${field} must be one of ${(params.allowedValues as unknown[]).join(', ')}`
    case 'pattern':
      if (field.endsWith('/mac')) return `${field} must be a MAC address such as 08:00:2b:01:02:03`
      if (field.endsWith('/idempotency-key')) return `${field} must be 1 to 255 visible ASCII characters (no spaces)`
      if (field.endsWith('/time_zone')) return `${field} must be an IANA time zone name such as Europe/Lisbon`
      if (field.includes('/opening_hours/')) return `${field} must be a time of day, HH:MM from 00:00 to 24:00`
      if (field.endsWith('/url')) return `${field} must be an http:// or https:// URL`
      if (field.endsWith('/duration')) return `${field} must be an ISO 8601 duration longer than zero, such as PT2H, P1D or P1DT2H30M`
      // Name's pattern only asks for one non-space character; any other pattern keeps Ajv's own words.
      if (params.pattern === '\\S') return `${field} must not be blank`
      return `${field} ${error.message ?? 'does not have the expected form'}`
  }
  return `${field} ${error.message ?? 'is invalid'}`
}

/**
 * Fastify's schemaErrorFormatter: unions (nullable fields, literal lists) make Ajv
 * report every branch, so the most specific error is chosen and stated once.
 */
export function formatValidationError (errors: FastifySchemaValidationError[], context: string): Error {
  // A union of literals refused the value when every error at its place is one of its
  // literals or the union itself (an enclosing nullable union adds its own errors above it).
  const literals = errors.filter((e) => e.keyword === 'const')
  const place = literals[0]?.instancePath
  if (place !== undefined && errors.filter((e) => e.instancePath === place).every((e) => e.keyword === 'const' || e.keyword === 'anyOf')) {
    const allowed = literals.filter((e) => e.instancePath === place).map((e) => String((e.params as { allowedValue: unknown }).allowedValue))
    return new Error(`${context}${place} must be one of ${allowed.join(', ')}`)
  }
  const specific = errors.find((e) => e.keyword !== 'type' && e.keyword !== 'anyOf' && e.keyword !== 'const') ?? errors[0]
  return new Error(specific ? describe(specific, context) : `${context} is invalid`)
}
