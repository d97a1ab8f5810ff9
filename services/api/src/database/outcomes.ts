import type { Allocation } from '../schemas/allocations.js'

/**
 * What a domain rule can refuse, by name. This is all the database layer says about a
 * refusal: how a client hears it (status, code, body) is decided by plugins/errors.ts alone.
 */
export type DomainCode =
  | 'ALLOCATION_CONFLICT' // the slot is taken: `conflicts` lists what overlaps
  | 'ALLOCATION_CANCELLED' // a cancelled allocation is history and cannot change
  | 'ALREADY_CONFIRMED' // confirming what is no hold
  | 'HOLD_EXPIRED' // the hold ran out before it was confirmed or changed
  | 'IN_USE' // a thing others still depend on (a resource with allocations ahead)
  | 'MAINTENANCE_ADMINS_ONLY' // maintenance is created, changed and cancelled by admins only
  | 'NO_AVAILABILITY' // book-any-free found no free resource
  | 'NOT_OWNER' // members act only on what they own
  | 'OPEN_ENDED_ADMINS_ONLY' // an open start or end (null) is for admins only
  | 'REFERENCE_NOT_FOUND' // an id in the request names nothing

/** A refusal by a domain rule, with what the client needs to act on it. */
export class DomainError extends Error {
  constructor (readonly code: DomainCode, message: string, readonly conflicts?: Allocation[]) {
    super(message)
  }
}

export function allocationConflict (conflicts: Allocation[]): DomainError {
  const n = conflicts.length
  return new DomainError('ALLOCATION_CONFLICT',
    `the resource is already allocated during that time (${n} overlapping allocation${n === 1 ? '' : 's'})`, conflicts)
}

export function holdExpired (expiresAt: string | null | undefined): DomainError {
  return new DomainError('HOLD_EXPIRED', expiresAt
    ? `the hold expired at ${expiresAt}; create a new one instead`
    : 'the hold has expired; create a new one instead')
}

export function allocationCancelled (): DomainError {
  return new DomainError('ALLOCATION_CANCELLED', 'the allocation is cancelled; create a new one instead')
}
