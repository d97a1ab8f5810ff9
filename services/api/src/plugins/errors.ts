import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { ConnectionError, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { surelyNotCommitted } from '../database/db.js'
import { DomainError, holdExpired, type DomainCode, type DomainDetails } from '../database/outcomes.js'
import { redactFeedUrl, redactFeedUrlsInText } from '../tokens.js'

/**
 * Every code a client can find in an error body, with its status, what it means and
 * what the client can do about it. This is the one place a status is chosen: errors are
 * made from a code. docs/errors.md is made from this list (npm run docs).
 */
export const ERROR_CODES = {
  VALIDATION_ERROR: { status: 400, meaning: 'the body, path or query string is invalid; the message names the field', action: 'fix the field the message names (the OpenAPI document gives each field\'s rules) and send again' },
  BAD_REQUEST: { status: 400, meaning: 'the request cannot be read (invalid JSON, a malformed %-escape) or breaks a rule between fields', action: 'send valid JSON and a well-formed URL; for a rule between fields, the message says which' },
  URL_NOT_ALLOWED: { status: 400, meaning: 'a webhook URL whose host is, or resolves to, a loopback, private, link-local, multicast or unspecified address (server-side request forgery)', action: 'give a URL on the public internet; an operator can allow a range with WEBHOOK_ALLOWED_CIDRS (e.g. 127.0.0.1/32 for a receiver on the same host)' },
  CONSTRAINT_VIOLATION: { status: 400, meaning: 'a database check refused a value; the message names the field', action: 'change the value the message names: the same value is refused every time' },
  INVALID_VALUE: { status: 400, meaning: 'PostgreSQL cannot take a value (a time or number out of its range)', action: 'send a value PostgreSQL can store (years 4713 BC to 294276 AD, numbers within range)' },
  UNAUTHENTICATED: { status: 401, meaning: 'no token: send "Authorization: Bearer <token>"', action: 'send "Authorization: Bearer <token>"; an admin makes tokens (POST /api/accounts/{id}/tokens, npm run token)' },
  INVALID_TOKEN: { status: 401, meaning: 'the token is malformed, unknown or revoked', action: 'check that the whole token was sent; a revoked token never works again, so ask for a new one' },
  FORBIDDEN: { status: 403, meaning: 'the role, or the owner of the thing, does not allow it', action: 'ask an admin to do it; members change only their own bookings and tokens' },
  NOT_FOUND: { status: 404, meaning: 'no such thing, or no such route', action: 'check the id and the path (under /api/<plural>, a resource of another type is not found)' },
  METHOD_NOT_ALLOWED: { status: 405, meaning: 'the route does not take that method', action: 'use a method the route takes (the OpenAPI document lists them)' },
  NOT_ACCEPTABLE: { status: 406, meaning: 'the reply cannot be given in a type the Accept header allows', action: 'accept application/json (text/calendar for .ics feeds)' },
  REQUEST_TIMEOUT: { status: 408, meaning: 'the request did not arrive in time', action: 'send the whole request promptly; retry on a better connection' },
  ALLOCATION_CONFLICT: { status: 409, meaning: 'the slot is taken; conflicts lists the allocations that overlap', action: 'pick another time or resource (GET …/free and GET /api/slots show what is free)' },
  ALLOCATION_CANCELLED: { status: 409, meaning: 'the allocation is cancelled and cannot change; book again instead', action: 'book again: a cancelled allocation stays as history and cannot change' },
  ALREADY_CONFIRMED: { status: 409, meaning: 'confirming an allocation that is already confirmed', action: 'nothing: the allocation is confirmed already' },
  HOLD_EXPIRED: { status: 409, meaning: 'the hold ran out before it was confirmed; book again', action: 'book again, as a hold or confirmed, if the slot is still free' },
  STATUS_TRANSITION: { status: 409, meaning: 'the allocation cannot change to that status', action: 'read the allocation to see its status now: a hold may be confirmed, cancelled or expire, nothing else changes status' },
  NO_AVAILABILITY: { status: 409, meaning: 'book-any-free found no resource free for the whole time', action: 'try another time or site, or find free slots with GET /api/slots' },
  SERIES_CONFLICT: { status: 409, meaning: 'an all_or_nothing series collides; conflicts lists each colliding occurrence with the allocations in its way', action: 'move the series, or send mode skip_conflicts to book the free occurrences only' },
  DUPLICATE: { status: 409, meaning: 'a name or MAC that must be unique is taken', action: 'choose another name (or MAC address), or rename the thing that has it' },
  IN_USE: { status: 409, meaning: 'still needed by other things (allocations ahead, resources at a site, containers in a freezer)', action: 'move or delete what still needs it first (a resource: or delete with ?force=true)' },
  REFERENCE_NOT_FOUND: { status: 409, meaning: 'an id in the body names nothing (a site, a type, a freezer)', action: 'create the thing first, or correct the id in the body' },
  CONCURRENT_UPDATE: { status: 409, meaning: 'a concurrent change touched the same rows; retry', action: 'send the request again: it changed nothing' },
  IDEMPOTENCY_KEY_IN_USE: { status: 409, meaning: 'a request with this Idempotency-Key is still running; retry shortly', action: 'send it again after Retry-After seconds, with the same key and body: you get the first response' },
  IDS_EXHAUSTED: { status: 409, meaning: 'no id is left to generate (a PUT chose the largest, 9007199254740991); choose ids with PUT', action: 'create with PUT and an id of your choice, or ask an operator to renumber' },
  CURSOR_EXPIRED: { status: 410, meaning: 'the change feed no longer keeps events that far back (EVENT_RETENTION_DAYS)', action: 'read the current state of what you follow again (GET the allocations and resources), then continue from the oldest kept position, which the message names' },
  PAYLOAD_TOO_LARGE: { status: 413, meaning: 'the body is larger than BODY_LIMIT', action: 'send a smaller body (BODY_LIMIT, 1 MiB unless configured)' },
  URI_TOO_LONG: { status: 414, meaning: 'the URL is too long', action: 'send a shorter URL: fewer or shorter query parameters' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, meaning: 'bodies are JSON: send Content-Type: application/json', action: 'send the body as JSON with Content-Type: application/json' },
  IDEMPOTENCY_KEY_REUSED: { status: 422, meaning: 'the Idempotency-Key was used with another body; use a new key', action: 'use a new key for a new request; resend the first body to get its response' },
  RULE_MIN_DURATION: { status: 422, meaning: 'a member\'s booking is shorter than the resource\'s min_duration; rule says which and its limit', action: 'book a longer time (GET /api/resources/{id}/rules gives the limits), or ask an admin to book it' },
  RULE_MAX_DURATION: { status: 422, meaning: 'a member\'s booking is longer than the resource\'s max_duration; rule says which and its limit', action: 'book a shorter time, or ask an admin to book it' },
  RULE_MIN_NOTICE: { status: 422, meaning: 'a member\'s booking starts sooner than min_notice from now; rule says which and its limit', action: 'book a time further ahead, or ask an admin to book it' },
  RULE_MAX_ADVANCE: { status: 422, meaning: 'a member\'s booking starts later than max_advance from now; rule says which and its limit', action: 'book it later, once the start is within max_advance, or ask an admin to book it' },
  RULE_OPEN_ENDED: { status: 422, meaning: 'a member\'s booking is open-ended and the resource\'s members_may_book_open_ended is false', action: 'give both starts_at and ends_at, or ask an admin to book it open-ended' },
  RULE_OPENING_HOURS: { status: 422, meaning: 'a member\'s booking is not entirely within the resource\'s opening hours; rule gives them and their time zone', action: 'book within the opening hours (GET /api/resources/{id}/rules; GET …/free shows what is open and free), or ask an admin to book it' },
  RULE_SLOT_GRID: { status: 422, meaning: 'a member\'s booking does not start and end on the resource\'s slot grid; rule gives the grid and its time zone', action: 'start and end on the grid, counted from local midnight (GET /api/slots shows slots that start on it), or ask an admin to book it' },
  RULE_QUOTA: { status: 422, meaning: 'a member\'s booking would exceed a quota; rule names the quota, the period and what is already used in it', action: 'book less within that period, cancel another booking in it, or book in another period' },
  HEADERS_TOO_LARGE: { status: 431, meaning: 'the request headers are too large', action: 'send smaller headers' },
  INTERNAL_ERROR: { status: 500, meaning: 'a fault of ours; it is logged with the request id', action: 'report it with the reply\'s X-Request-Id: the server logged the cause' },
  DATABASE_UNAVAILABLE: { status: 503, meaning: 'the database cannot be reached, or did not answer in time; retry after Retry-After seconds', action: 'send it again after Retry-After seconds: nothing was changed' },
  OUTCOME_UNKNOWN: { status: 503, meaning: 'the connection to the database was lost after the change was sent (a failover): it may or may not have been stored', action: 'send it again with the same Idempotency-Key (you get the stored response if it was stored), or read before retrying without one' },
  SERVER_BUSY: { status: 503, meaning: 'the server is overloaded and sheds requests; retry after Retry-After seconds', action: 'send it again after Retry-After seconds: nothing was changed' }
} as const satisfies Record<string, ErrorInfo>

export type ErrorCode = keyof typeof ERROR_CODES

/** A code's entry in ERROR_CODES. */
export interface ErrorInfo {
  status: number
  meaning: string
  /** What a client should do about it: every error body carries it as `hint`. */
  action: string
}

/** An error the client caused or must hear about, carried to the reply as it is. */
export class HttpError extends Error {
  constructor (readonly code: ErrorCode, message: string,
    /** Members the error body carries besides the usual four (a conflict's `conflicts`, a rule's `rule`). */
    readonly details: DomainDetails = {},
    readonly statusCode: number = ERROR_CODES[code].status) {
    super(message)
  }
}

export class NotFoundError extends HttpError {
  constructor (message: string) { super('NOT_FOUND', message) }
}

export class BadRequestError extends HttpError {
  constructor (message: string) { super('BAD_REQUEST', message) }
}

/**
 * No usable credentials: answered 401 with a `WWW-Authenticate: Bearer` challenge
 * (RFC 6750). `invalidToken` adds error="invalid_token": a token was sent but is
 * malformed, unknown or revoked. The message never repeats what was sent.
 */
export class UnauthorizedError extends HttpError {
  constructor (message: string, readonly invalidToken: boolean) {
    super(invalidToken ? 'INVALID_TOKEN' : 'UNAUTHENTICATED', message)
  }

  get challenge (): string {
    return this.invalidToken ? 'Bearer realm="invsys", error="invalid_token"' : 'Bearer realm="invsys"'
  }
}

/** Authenticated, but this account may not do this (its role, or someone else's thing). */
export class ForbiddenError extends HttpError {
  constructor (message: string) { super('FORBIDDEN', message) }
}

/** How a client hears each domain refusal: mostly by the same name. */
const DOMAIN_ERRORS: Record<DomainCode, ErrorCode> = {
  ALLOCATION_CONFLICT: 'ALLOCATION_CONFLICT',
  ALLOCATION_CANCELLED: 'ALLOCATION_CANCELLED',
  ALREADY_CONFIRMED: 'ALREADY_CONFIRMED',
  CURSOR_EXPIRED: 'CURSOR_EXPIRED',
  HOLD_EXPIRED: 'HOLD_EXPIRED',
  ID_SPACE_CROWDED: 'CONCURRENT_UPDATE',
  IN_USE: 'IN_USE',
  MAINTENANCE_ADMINS_ONLY: 'FORBIDDEN',
  NO_AVAILABILITY: 'NO_AVAILABILITY',
  NOT_OWNER: 'FORBIDDEN',
  REFERENCE_NOT_FOUND: 'REFERENCE_NOT_FOUND',
  RULE_MIN_DURATION: 'RULE_MIN_DURATION',
  RULE_MAX_DURATION: 'RULE_MAX_DURATION',
  RULE_MIN_NOTICE: 'RULE_MIN_NOTICE',
  RULE_MAX_ADVANCE: 'RULE_MAX_ADVANCE',
  RULE_OPEN_ENDED: 'RULE_OPEN_ENDED',
  RULE_OPENING_HOURS: 'RULE_OPENING_HOURS',
  RULE_SLOT_GRID: 'RULE_SLOT_GRID',
  RULE_QUOTA: 'RULE_QUOTA',
  SERIES_CONFLICT: 'SERIES_CONFLICT',
  SERIES_OVERLAPS_ITSELF: 'BAD_REQUEST',
  URL_NOT_ALLOWED: 'URL_NOT_ALLOWED'
}

function fromDomainError (error: DomainError): HttpError {
  return new HttpError(DOMAIN_ERRORS[error.code], error.message, error.details)
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
export const CONSTRAINT_MESSAGES: Record<string, string> = {
  site_id_range: 'id must be from 1 to 9007199254740991',
  account_id_range: 'id must be from 1 to 9007199254740991',
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
  allocation_status_transition: 'the allocation cannot change to that status',
  resource_type_rule_not_negative: 'rule durations must not be negative',
  resource_rule_not_negative: 'rule durations must not be negative',
  resource_type_rule_min_within_max: 'min_duration must not be longer than max_duration',
  resource_rule_min_within_max: 'min_duration must not be longer than max_duration',
  allocation_buffers_not_negative: 'buffer_before and buffer_after must not be negative',
  resource_type_rule_time_zone_known: 'time_zone must be a time zone PostgreSQL knows: an IANA name such as Europe/Lisbon or America/New_York (an offset such as +01:00 is not a zone)',
  resource_rule_time_zone_known: 'time_zone must be a time zone PostgreSQL knows: an IANA name such as Europe/Lisbon or America/New_York (an offset such as +01:00 is not a zone)',
  resource_type_rule_opening_hours_valid: 'opening_hours must be {"mon": [["08:00", "18:00"], …], …}: weekdays mon to sun, HH:MM from 00:00 to 24:00, each interval ending after it starts and none overlapping another of its day',
  resource_rule_opening_hours_valid: 'opening_hours must be {"mon": [["08:00", "18:00"], …], …}: weekdays mon to sun, HH:MM from 00:00 to 24:00, each interval ending after it starts and none overlapping another of its day',
  resource_type_rule_slot_grid_valid: 'slot_grid must be longer than zero and either divide a day evenly (PT15M, PT1H, PT90M) or be P1D',
  resource_rule_slot_grid_valid: 'slot_grid must be longer than zero and either divide a day evenly (PT15M, PT1H, PT90M) or be P1D',
  resource_type_rule_quotas_valid: 'quotas must be [{"period": "day"|"week"|"month", "max_duration": duration or null, "max_bookings": number or null}, …], at least one limit each, none negative',
  resource_rule_quotas_valid: 'quotas must be [{"period": "day"|"week"|"month", "max_duration": duration or null, "max_bookings": number or null}, …], at least one limit each, none negative'
}

/**
 * Rules a trigger enforces by raising a named check_violation that are conflicts with
 * the allocation's current state (409), not invalid input (400): told exactly as the
 * same refusal found by the API's own checks.
 */
const STATE_CONFLICTS: Record<string, () => HttpError> = {
  allocation_hold_expired: () => fromDomainError(holdExpired(undefined)),
  allocation_status_transition: () => new HttpError('STATUS_TRANSITION', CONSTRAINT_MESSAGES.allocation_status_transition!)
}

/** Foreign keys read differently when the referenced row is missing and when it is still in use. */
export const FOREIGN_KEY_MESSAGES: Record<string, { missing: string, inUse: string }> = {
  resource_site_id_fkey: { missing: 'site_id does not name an existing site', inUse: 'the site still has resources; move or delete them first' },
  resource_type_fkey: { missing: 'type is not a known resource type', inUse: 'the resource type is still used by resources' },
  container_freezer_fkey: { missing: 'freezer_id does not name an existing freezer', inUse: 'the freezer still holds containers; move or delete them first (or delete with ?force=true)' },
  allocation_resource_id_fkey: { missing: 'resource_id does not name an existing resource', inUse: 'the resource still has allocations' },
  api_token_account_id_fkey: { missing: 'no such account', inUse: 'the account still has tokens' },
  allocation_owner_id_fkey: { missing: 'no such account', inUse: 'the account still owns allocations' },
  allocation_updated_by_fkey: { missing: 'no such account', inUse: 'the account is still named as the last to change allocations' },
  // Feeds go with what they show (ON DELETE CASCADE), so only `missing` can happen.
  calendar_feed_resource_id_fkey: { missing: 'resource_id does not name an existing resource', inUse: 'the resource still has calendar feeds' },
  calendar_feed_site_id_fkey: { missing: 'site_id does not name an existing site', inUse: 'the site still has calendar feeds' },
  calendar_feed_type_fkey: { missing: 'type is not a known resource type', inUse: 'the resource type still has calendar feeds' },
  calendar_feed_account_id_fkey: { missing: 'no such account', inUse: 'the account still has calendar feeds' }
}

/**
 * The database cannot be reached, or cannot answer now, which is not the client's fault:
 * connection failures, a server shutting down or starting (57P0x), out of connections or
 * other resources (53xxx), a statement cancelled by statement_timeout (57014), a lock
 * not granted (55P03), or a write sent to a standby (25006: during a failover, a
 * connection that still reached the old primary after it was demoted).
 */
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ENOTFOUND', 'ETIMEDOUT', 'EAI_AGAIN', 'EPIPE',
  'EHOSTUNREACH', 'ENETUNREACH', '57P01', '57P02', '57P03', '57P05', '57014', '55P03', '25006'])

// node-postgres reports a dropped or never-made connection only in the message.
const CONNECTION_LOST = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Client was closed and is not queryable|Cannot use a pool after calling end|Query read timeout/

/**
 * Failures after which a statement that was sent may have been committed, its answer lost:
 * the connection died mid-statement (its message, a reset, node-postgres's own query
 * timeout), or PostgreSQL ended the session (57P01 administrator command, 57P02 crash of
 * another backend), which is also how it ends one still waiting for the synchronous standby
 * after committing locally ("canceling the wait for synchronous replication and terminating
 * connection … already committed locally").
 */
const AMBIGUOUS_CODES = new Set(['ECONNRESET', 'EPIPE', '57P01', '57P02'])
const AMBIGUOUS_MESSAGE = /Connection terminated unexpectedly|Query read timeout|Client has encountered a connection error/

function isUnavailable (error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const code = (error as { code?: unknown }).code
  if (typeof code === 'string' && (UNAVAILABLE_CODES.has(code) || code.startsWith('08') || code.startsWith('53'))) return true
  const message = (error as { message?: unknown }).message
  return typeof message === 'string' && CONNECTION_LOST.test(message)
}

function isAmbiguous (error: unknown): boolean {
  if (typeof error !== 'object' || error === null || surelyNotCommitted(error)) return false
  const { code, message } = error as { code?: unknown, message?: unknown }
  if (typeof code === 'string') return AMBIGUOUS_CODES.has(code)
  return typeof message === 'string' && AMBIGUOUS_MESSAGE.test(message)
}

/** Methods whose request may change something: on them an ambiguous failure is OUTCOME_UNKNOWN. */
const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/**
 * How a client hears a write that failed: OUTCOME_UNKNOWN when its statement (or COMMIT)
 * reached the database and the answer was lost, so that it may have been stored; otherwise
 * as any error.
 */
export function writeFailure (error: unknown): HttpError {
  if (isAmbiguous(error)) {
    return new HttpError('OUTCOME_UNKNOWN', 'the connection to the database was lost after the change was sent: it may or may not have been stored; ' +
      'retry with the same Idempotency-Key, or read before retrying')
  }
  return toHttpError(error as FastifyError, 'GET')
}

/** Maps a PostgreSQL error to the HTTP error it means, or undefined when it is our bug. */
export function fromPgError (error: unknown): HttpError | undefined {
  if (isUnavailable(error)) return new HttpError('DATABASE_UNAVAILABLE', 'the database cannot be reached; try again shortly')
  if (!isPgError(error)) return undefined
  const constraint = error.constraint ?? ''
  const stateConflict = STATE_CONFLICTS[constraint]
  if (stateConflict) return stateConflict()
  switch (error.code) {
    case '23P01':
      // Only when no caller looked up what overlaps (they turn it into a DomainError with the conflicts).
      return new HttpError('ALLOCATION_CONFLICT', CONSTRAINT_MESSAGES[constraint] ?? error.message, { conflicts: [] })
    case '23505':
      return new HttpError('DUPLICATE', CONSTRAINT_MESSAGES[constraint] ?? `duplicate value violates ${constraint}`)
    case '23503': {
      const messages = FOREIGN_KEY_MESSAGES[constraint]
      const inUse = /still referenced/.test(error.detail ?? '')
      return new HttpError(inUse ? 'IN_USE' : 'REFERENCE_NOT_FOUND', messages ? (inUse ? messages.inUse : messages.missing) : error.message)
    }
    case '23514':
      return new HttpError('CONSTRAINT_VIOLATION', CONSTRAINT_MESSAGES[constraint] ?? `value violates ${constraint}`)
    case '23502':
      return new HttpError('CONSTRAINT_VIOLATION', `${error.column ?? 'a required field'} must not be null`)
    case '40P01':
    case '40001':
      return new HttpError('CONCURRENT_UPDATE', 'a concurrent change touched the same rows; retry the request')
    case '2200H':
      // An identity sequence at its MAXVALUE (2^53 - 1, the largest id a JSON number holds exactly).
      return new HttpError('IDS_EXHAUSTED', 'no id is left to generate: one was chosen at or near the largest, 9007199254740991 (PUT); choose ids with PUT')
  }
  // Class 22 is "data exception": a value the client sent that PostgreSQL cannot take
  // (22P02 invalid text, 22007/22008 bad or out-of-range dates, 22003 out-of-range numbers).
  if (error.code.startsWith('22')) return new HttpError('INVALID_VALUE', error.message)
  return undefined
}

/** Fastify's own errors keep their status; the code is ours so clients see one vocabulary. */
const FRAMEWORK_CODES: Record<number, ErrorCode> = {
  400: 'BAD_REQUEST',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  406: 'NOT_ACCEPTABLE',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  431: 'HEADERS_TOO_LARGE'
}

function toHttpError (error: FastifyError, method: string): HttpError {
  if (error instanceof HttpError) return error
  if (error instanceof DomainError) return fromDomainError(error)
  if (error.validation) return new HttpError('VALIDATION_ERROR', error.message)
  if (WRITE_METHODS.has(method) && isAmbiguous(error)) return writeFailure(error)
  const mapped = fromPgError(error)
  if (mapped) return mapped
  const status = error.statusCode
  if (status !== undefined && status >= 400 && status < 500) {
    return new HttpError(FRAMEWORK_CODES[status] ?? 'BAD_REQUEST', error.message, {}, status)
  }
  return new HttpError('INTERNAL_ERROR', 'an unexpected error occurred; it has been logged')
}

/** The code each error reply was sent with, for the metrics (a reply is answered once). */
const sentCodes = new WeakMap<FastifyReply, ErrorCode>()

export function errorCodeOf (reply: FastifyReply): ErrorCode | undefined {
  return sentCodes.get(reply)
}

function sendError (reply: FastifyReply, error: HttpError): FastifyReply {
  sentCodes.set(reply, error.code)
  const retryAfter = RETRY_AFTER[error.code]
  if (retryAfter !== undefined) reply.header('Retry-After', retryAfter)
  return reply.code(error.statusCode).send(errorBody(error))
}

/**
 * For an onSend hook that finds, as the reply goes out, that it cannot stand (its
 * transaction did not commit): the error's reply instead, as its payload.
 */
export function errorInstead (reply: FastifyReply, error: HttpError): string {
  sentCodes.set(reply, error.code)
  const retryAfter = RETRY_AFTER[error.code]
  if (retryAfter !== undefined) reply.header('Retry-After', retryAfter)
  reply.code(error.statusCode).removeHeader('location').header('content-type', 'application/json; charset=utf-8')
  return JSON.stringify(errorBody(error))
}

/** The JSON body of every error reply: the code, what happened, and what to do about it (`hint`). */
function errorBody (error: HttpError) {
  return {
    statusCode: error.statusCode,
    code: error.code,
    error: STATUS_CODES[error.statusCode] ?? 'Error',
    message: error.message,
    hint: ERROR_CODES[error.code].action,
    ...error.details
  }
}

/**
 * Errors the router raises before any route or hook runs (a malformed %-escape in the
 * path) get the same JSON body as every other error.
 */
export function sendFrameworkError (error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400
  // The message quotes the path, which may be a calendar feed's address.
  void sendError(reply, new HttpError(FRAMEWORK_CODES[status] ?? 'BAD_REQUEST', redactFeedUrlsInText(error.message), {}, status))
}

/** How long a client should wait before retrying a 503, in seconds. */
const RETRY_AFTER: Partial<Record<ErrorCode, string>> = { DATABASE_UNAVAILABLE: '5', OUTCOME_UNKNOWN: '5', SERVER_BUSY: '1' }

/** A request line this long (bytes) means the URL, not the other headers, overflowed Node's header limit. */
const LONG_REQUEST_LINE = 8192

/** What Node's HTTP parser refused, as the error the client hears. */
function fromParserError (error: ConnectionError): HttpError {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new HttpError('REQUEST_TIMEOUT', 'the request did not arrive in time')
    case 'HPE_HEADER_OVERFLOW': {
      // Typed as Buffer's JSON form, but Node hands over the Buffer itself.
      const raw: unknown = error.rawPacket
      const packet = Buffer.isBuffer(raw) ? raw : Buffer.alloc(0)
      const lineEnd = packet.indexOf('\r\n')
      const longLine = (lineEnd === -1 ? packet.length : lineEnd) >= LONG_REQUEST_LINE
      return longLine
        ? new HttpError('URI_TOO_LONG', 'the URL is too long (the request line and headers may hold 16 kB together)')
        : new HttpError('HEADERS_TOO_LARGE', 'the request headers are too large (16 kB together with the request line)')
    }
    default:
      return new HttpError('BAD_REQUEST', `the request is not valid HTTP/1.1 (${error.code ?? 'unreadable'})`)
  }
}

/**
 * Requests Node's HTTP parser refuses before Fastify sees them (a header section over the
 * limit, a NUL byte or a space in the URL, a malformed header, a timeout) are answered with
 * the same JSON error body as any other error. Unlike Fastify's default handler, this logs
 * the error's code only: its rawPacket holds the request's bytes, Authorization header
 * included.
 */
export function sendClientError (this: FastifyInstance, error: ConnectionError, socket: Socket): void {
  // A reset connection has nobody to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const httpError = fromParserError(error)
  this.log.debug({ code: error.code, statusCode: httpError.statusCode }, 'unreadable request refused')
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const body = JSON.stringify(errorBody(httpError))
  const head = `HTTP/1.1 ${httpError.statusCode} ${STATUS_CODES[httpError.statusCode] ?? 'Error'}\r\n` +
    'Content-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n'
  socket.end(head + body, () => socket.destroy())
}

/**
 * How long a refused body is read and thrown away before its connection is closed, as
 * nginx's lingering close does (lingering_time 30 s, lingering_timeout 5 s).
 */
const LINGER_MS = 30_000
const LINGER_IDLE_MS = 5_000

/**
 * A body over BODY_LIMIT is refused before it is read, and Fastify then closes the
 * connection. A client still sending (Node's fetch, curl, a 3 MB body) gets a reset
 * (EPIPE, "fetch failed") instead of the 413. So the connection is kept while the rest
 * of the body arrives, read and discarded, for up to LINGER_MS (or LINGER_IDLE_MS
 * without a byte), and only then closed; a client that sends its body whole reads the 413
 * and may go on using the connection.
 */
function lingerOverTooLargeBody (request: FastifyRequest, reply: FastifyReply): void {
  const incoming = request.raw
  if (incoming.complete) return
  reply.removeHeader('connection')
  const close = () => { incoming.socket.destroy() }
  const total = setTimeout(close, LINGER_MS)
  let idle = setTimeout(close, LINGER_IDLE_MS)
  incoming.on('data', () => {
    clearTimeout(idle)
    idle = setTimeout(close, LINGER_IDLE_MS)
  })
  const done = () => {
    clearTimeout(total)
    clearTimeout(idle)
  }
  incoming.once('end', done)
  incoming.once('close', done)
  incoming.resume()
}

/** One place turns every thrown error into the JSON error body, and every miss into a JSON 404. */
export const errorHandling = fp(async function errorHandling (app: FastifyInstance) {
  app.setErrorHandler(function (error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
    const httpError = toHttpError(error, request.method)
    if (httpError.code === 'SERVER_BUSY') {
      // Shed on purpose, and perhaps by the thousand: one short line each.
      request.log.warn({ code: httpError.code }, 'request shed')
    } else if (httpError.statusCode >= 500) {
      request.log.error({ err: error }, 'request failed')
    } else {
      request.log.info({ code: httpError.code, message: httpError.message }, 'request refused')
    }
    if (httpError instanceof UnauthorizedError) reply.header('WWW-Authenticate', httpError.challenge)
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') lingerOverTooLargeBody(request, reply)
    return sendError(reply, httpError)
  })
  app.setNotFoundHandler(function (request: FastifyRequest, reply: FastifyReply) {
    // Never a calendar feed's address, even a mistyped one: it holds the secret.
    const error = new NotFoundError(`no route ${request.method} ${redactFeedUrl(request.url.split('?')[0]!)}`)
    return sendError(reply, error)
  })
}, { name: 'invsys-errors' })
