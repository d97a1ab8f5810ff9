import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Allocation } from './schemas/allocations.js'

/** An error the client caused or must hear about, carried to the reply as it is. */
export class HttpError extends Error {
  constructor (readonly statusCode: number, readonly code: string, message: string) {
    super(message)
  }
}

export class NotFoundError extends HttpError {
  constructor (message: string) { super(404, 'NOT_FOUND', message) }
}

export class BadRequestError extends HttpError {
  constructor (message: string) { super(400, 'BAD_REQUEST', message) }
}

export class ConflictError extends HttpError {
  constructor (message: string, code = 'CONFLICT') { super(409, code, message) }
}

/**
 * No usable credentials: answered 401 with a `WWW-Authenticate: Bearer` challenge
 * (RFC 6750). `invalidToken` adds error="invalid_token": a token was sent but is
 * malformed, unknown or revoked. The message never repeats what was sent.
 */
export class UnauthorizedError extends HttpError {
  constructor (message: string, readonly invalidToken: boolean) {
    super(401, invalidToken ? 'INVALID_TOKEN' : 'UNAUTHENTICATED', message)
  }

  get challenge (): string {
    return this.invalidToken ? 'Bearer realm="invsys", error="invalid_token"' : 'Bearer realm="invsys"'
  }
}

/** Authenticated, but this account may not do this (its role, or someone else's thing). */
export class ForbiddenError extends HttpError {
  constructor (message: string) { super(403, 'FORBIDDEN', message) }
}

/** The slot is taken: carries the live allocations that overlap the one refused. */
export class AllocationConflictError extends ConflictError {
  constructor (readonly conflicts: Allocation[]) {
    super(`the resource is already allocated during that time (${conflicts.length} overlapping allocation${conflicts.length === 1 ? '' : 's'})`, 'ALLOCATION_CONFLICT')
  }
}

interface PgError { code: string, constraint?: string, column?: string, detail?: string, message: string }

function isPgError (error: unknown): error is PgError {
  return typeof error === 'object' && error !== null && typeof (error as PgError).code === 'string' &&
    /^[0-9A-Z]{5}$/.test((error as PgError).code)
}

/**
 * What each named constraint means to a client. The database enforces the rule; this
 * table only turns its name into a sentence that names the field.
 */
const CONSTRAINT_MESSAGES: Record<string, string> = {
  site_name_not_blank: 'name must not be blank',
  resource_name_not_blank: 'name must not be blank',
  resource_type_name_unique: 'name is already used by another resource of this type',
  resource_mac_unique: 'mac is already used by another resource',
  resource_mac_only_on_computers: 'mac is allowed only on computers',
  allocation_during_not_empty: 'starts_at must be before ends_at',
  allocation_during_finite: 'starts_at and ends_at must be finite times (use null for an open end)',
  allocation_no_overlap: 'the resource is already allocated during that time',
  account_name_format: 'name must start with a letter or digit and hold only letters, digits and . _ @ - (at most 100)',
  account_name_unique: 'name is already used by another account (names ignore case)',
  account_role_known: 'role must be one of admin, member',
  allocation_expires_at_matches_status: 'expires_at is set exactly when status is held or expired',
  allocation_hold_length: 'hold_seconds must be from 1 to 3600: a hold ends after its creation and within an hour',
  allocation_hold_expired: 'the hold has expired; create a new one instead',
  allocation_status_transition: 'the allocation cannot change to that status'
}

/**
 * Rules a trigger enforces by raising a named check_violation that are conflicts with
 * the allocation's current state (409 with this code), not invalid input (400).
 */
const STATE_CONFLICT_CODES: Record<string, string> = {
  allocation_hold_expired: 'HOLD_EXPIRED',
  allocation_status_transition: 'STATUS_TRANSITION'
}

/** Foreign keys read differently when the referenced row is missing and when it is still in use. */
const FOREIGN_KEY_MESSAGES: Record<string, { missing: string, inUse: string }> = {
  resource_site_id_fkey: { missing: 'site_id does not name an existing site', inUse: 'the site still has resources; move or delete them first' },
  resource_type_fkey: { missing: 'type is not a known resource type', inUse: 'the resource type is still used by resources' },
  container_freezer_fkey: { missing: 'freezer_id does not name an existing freezer', inUse: 'the freezer still holds containers; move or delete them first (or delete with ?force=true)' },
  allocation_resource_id_fkey: { missing: 'resource_id does not name an existing resource', inUse: 'the resource still has allocations' },
  api_token_account_id_fkey: { missing: 'no such account', inUse: 'the account still has tokens' },
  allocation_owner_id_fkey: { missing: 'no such account', inUse: 'the account still owns allocations' },
  allocation_updated_by_fkey: { missing: 'no such account', inUse: 'the account is still named as the last to change allocations' }
}

/** Connection-level failures: the database cannot be reached, which is not the client's fault. */
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EAI_AGAIN', 'EPIPE', '57P01', '57P02', '57P03', '53300'])

function isUnavailable (error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const code = (error as { code?: unknown }).code
  if (typeof code === 'string' && (UNAVAILABLE_CODES.has(code) || code.startsWith('08'))) return true
  const message = (error as { message?: unknown }).message
  // node-postgres reports a dropped or never-made connection only in the message.
  return typeof message === 'string' &&
    /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Cannot use a pool after calling end/.test(message)
}

/** Maps a PostgreSQL error to the HTTP error it means, or undefined when it is our bug. */
export function fromPgError (error: unknown): HttpError | undefined {
  if (isUnavailable(error)) return new HttpError(503, 'DATABASE_UNAVAILABLE', 'the database cannot be reached; try again shortly')
  if (!isPgError(error)) return undefined
  const constraint = error.constraint ?? ''
  const stateConflict = STATE_CONFLICT_CODES[constraint]
  if (stateConflict) return new ConflictError(CONSTRAINT_MESSAGES[constraint] ?? error.message, stateConflict)
  switch (error.code) {
    case '23P01':
      return new ConflictError(CONSTRAINT_MESSAGES[constraint] ?? error.message, 'ALLOCATION_CONFLICT')
    case '23505':
      return new ConflictError(CONSTRAINT_MESSAGES[constraint] ?? `duplicate value violates ${constraint}`, 'DUPLICATE')
    case '23503': {
      const messages = FOREIGN_KEY_MESSAGES[constraint]
      const inUse = /still referenced/.test(error.detail ?? '')
      return new ConflictError(messages ? (inUse ? messages.inUse : messages.missing) : error.message, inUse ? 'IN_USE' : 'REFERENCE_NOT_FOUND')
    }
    case '23514':
      return new HttpError(400, 'CONSTRAINT_VIOLATION', CONSTRAINT_MESSAGES[constraint] ?? `value violates ${constraint}`)
    case '23502':
      return new HttpError(400, 'CONSTRAINT_VIOLATION', `${error.column ?? 'a required field'} must not be null`)
    case '40P01':
    case '40001':
      return new ConflictError('a concurrent change touched the same rows; retry the request', 'CONCURRENT_UPDATE')
  }
  // Class 22 is "data exception": a value the client sent that PostgreSQL cannot take
  // (22P02 invalid text, 22007/22008 bad or out-of-range dates, 22003 out-of-range numbers).
  if (error.code.startsWith('22')) return new HttpError(400, 'INVALID_VALUE', error.message)
  return undefined
}

/** Fastify's own errors keep their status; the code is ours so clients see one vocabulary. */
const FRAMEWORK_CODES: Record<number, string> = {
  400: 'BAD_REQUEST',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  406: 'NOT_ACCEPTABLE',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  431: 'HEADERS_TOO_LARGE'
}

function toHttpError (error: FastifyError): HttpError {
  if (error instanceof HttpError) return error
  if (error.validation) {
    return new HttpError(400, 'VALIDATION_ERROR', error.message)
  }
  const mapped = fromPgError(error)
  if (mapped) return mapped
  const status = error.statusCode
  if (status !== undefined && status >= 400 && status < 500) {
    return new HttpError(status, FRAMEWORK_CODES[status] ?? 'BAD_REQUEST', error.message)
  }
  return new HttpError(500, 'INTERNAL_ERROR', 'an unexpected error occurred; it has been logged')
}

export function errorBody (error: HttpError) {
  return {
    statusCode: error.statusCode,
    code: error.code,
    error: STATUS_CODES[error.statusCode] ?? 'Error',
    message: error.message,
    ...(error instanceof AllocationConflictError ? { conflicts: error.conflicts } : {})
  }
}

/**
 * Errors the router raises before any route or hook runs (a malformed %-escape in the
 * path) get the same JSON body as every other error.
 */
export function sendFrameworkError (error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400
  void reply.code(status).send(errorBody(new HttpError(status, FRAMEWORK_CODES[status] ?? 'BAD_REQUEST', error.message)))
}

/** One place turns every thrown error into the JSON error body, and every miss into a JSON 404. */
export const errorHandling = fp(async function errorHandling (app: FastifyInstance) {
  app.setErrorHandler(function (error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
    const httpError = toHttpError(error)
    if (httpError.statusCode >= 500) {
      request.log.error({ err: error }, 'request failed')
    } else {
      request.log.info({ code: httpError.code, message: httpError.message }, 'request refused')
    }
    if (httpError.statusCode === 503) reply.header('Retry-After', '5')
    if (httpError instanceof UnauthorizedError) reply.header('WWW-Authenticate', httpError.challenge)
    return reply.code(httpError.statusCode).send(errorBody(httpError))
  })
  app.setNotFoundHandler(function (request: FastifyRequest, reply: FastifyReply) {
    const error = new NotFoundError(`no route ${request.method} ${request.url.split('?')[0]}`)
    return reply.code(404).send(errorBody(error))
  })
}, { name: 'invsys-errors' })
