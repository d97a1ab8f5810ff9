import type { Allocation } from '../schemas/allocations.js'
import type { RuleBreach } from '../schemas/rules.js'

/**
 * What a domain rule can refuse, by name. This is all the database layer says about a
 * refusal: how a client hears it (status, code, body) is decided by plugins/errors.ts alone.
 */
export type DomainCode =
  | 'ALLOCATION_CONFLICT' // the slot is taken: `conflicts` lists what overlaps
  | 'ALLOCATION_CANCELLED' // a cancelled allocation is history and cannot change
  | 'ALREADY_CONFIRMED' // confirming what is no hold
  | 'CURSOR_EXPIRED' // a change feed cursor older than what the feed keeps
  | 'HOLD_EXPIRED' // the hold ran out before it was confirmed or changed
  | 'ID_SPACE_CROWDED' // a generated id kept landing on ids taken by hand
  | 'IN_USE' // a thing others still depend on (a resource with allocations ahead)
  | 'MAINTENANCE_ADMINS_ONLY' // maintenance is created, changed and cancelled by admins only
  | 'NO_AVAILABILITY' // book-any-free found no free resource
  | 'NOT_OWNER' // members act only on what they own
  | 'REFERENCE_NOT_FOUND' // an id in the request names nothing
  | 'RULE_MIN_DURATION' // a member's booking is shorter than the resource's min_duration: `rule` says which
  | 'RULE_MAX_DURATION' // longer than max_duration
  | 'RULE_MIN_NOTICE' // starts sooner than min_notice from now
  | 'RULE_MAX_ADVANCE' // starts later than max_advance from now
  | 'RULE_OPEN_ENDED' // open-ended while members_may_book_open_ended is false
  | 'RULE_OPENING_HOURS' // not entirely within the resource's opening hours
  | 'RULE_SLOT_GRID' // does not start and end on the resource's slot grid
  | 'RULE_QUOTA' // more than a quota allows the member in a period: `rule` names the quota, the period and what is used
  | 'SERIES_CONFLICT' // occurrences of an all-or-nothing series collide: `occurrences` lists each with what it hits
  | 'SERIES_OVERLAPS_ITSELF' // with the resource's buffers, occurrences of one series would block each other
  | 'URL_NOT_ALLOWED' // a webhook URL whose host is loopback, private, link-local... (server-side request forgery)

/**
 * What a refusal carries besides its message, for the client to act on: the allocations
 * in the way (`conflicts`; for a series, each colliding occurrence with its own), or the
 * booking rule broken (`rule`). They become members of the error body as they are.
 */
export interface DomainDetails {
  conflicts?: Allocation[] | OccurrenceConflict[]
  rule?: RuleBreach
}

/** A refusal by a domain rule, with what the client needs to act on it. */
export class DomainError extends Error {
  constructor (readonly code: DomainCode, message: string, readonly details: DomainDetails = {}) {
    super(message)
  }
}

/** A booking rule refused a member's booking: `rule` says which, its limit and where it comes from. */
export function ruleViolation (code: DomainCode, message: string, rule: RuleBreach): DomainError {
  return new DomainError(code, message, { rule })
}

export function allocationConflict (conflicts: Allocation[]): DomainError {
  const n = conflicts.length
  return new DomainError('ALLOCATION_CONFLICT',
    `the resource is already allocated during that time (${n} overlapping allocation${n === 1 ? '' : 's'})`, { conflicts })
}

export function holdExpired (expiresAt: string | null | undefined): DomainError {
  return new DomainError('HOLD_EXPIRED', expiresAt
    ? `the hold expired at ${expiresAt}; create a new one instead`
    : 'the hold has expired; create a new one instead')
}

export function allocationCancelled (): DomainError {
  return new DomainError('ALLOCATION_CANCELLED', 'the allocation is cancelled; create a new one instead')
}

/** The feed keeps events from `keptFrom` on: `after` is older than that. */
export function cursorExpired (after: number, keptFrom: number): DomainError {
  return new DomainError('CURSOR_EXPIRED', `the change feed no longer keeps the events after position ${after} (EVENT_RETENTION_DAYS): ` +
    `read the current state of what you follow again, then continue with after=${keptFrom - 1}`)
}

/** A webhook URL refused: `reason` names the address, never a secret. */
export function urlNotAllowed (reason: string): DomainError {
  return new DomainError('URL_NOT_ALLOWED', `body/url is not allowed: ${reason} (WEBHOOK_ALLOWED_CIDRS can allow a range)`)
}

/** One occurrence of a series that could not be booked, with the live allocations in its way. */
export interface OccurrenceConflict {
  starts_at: string
  ends_at: string
  conflicts: Allocation[]
}

/** An all-or-nothing series refused: every colliding occurrence, with what it collides with. */
export function seriesConflict (occurrences: OccurrenceConflict[]): DomainError {
  const n = occurrences.length
  return new DomainError('SERIES_CONFLICT',
    `${n} occurrence${n === 1 ? '' : 's'} of the series collide${n === 1 ? 's' : ''} with existing allocations; nothing was booked`, { conflicts: occurrences })
}
