import type { Guard } from './database/allocations.js'
import { DomainError } from './database/outcomes.js'
import type { Account } from './schemas/accounts.js'

/**
 * Who may do what to allocations, in one place. Admins may do anything; members book
 * for themselves and change only what they own, and maintenance (which blocks a
 * resource for everyone) is the admins' business in every form.
 */

/** Members book with kind booking; only admins create maintenance or turn a booking into it. */
export function refuseKind (actor: Account, kind: string | undefined): void {
  if (kind === 'maintenance' && actor.role !== 'admin') {
    throw new DomainError('MAINTENANCE_ADMINS_ONLY', 'only admins may create maintenance allocations; members book with kind booking')
  }
}

/**
 * The guard for changing, moving, confirming or cancelling an allocation as `actor`:
 * a member's own bookings only, never a maintenance block (even one that was the
 * member's booking before an admin made it maintenance).
 */
export function mayChangeAllocation (actor: Account): Guard {
  return (current) => {
    if (actor.role === 'admin') return undefined
    if (current.owner_id !== actor.id) {
      return new DomainError('NOT_OWNER', 'the allocation belongs to another account: only its owner or an admin may change, confirm or cancel it')
    }
    if (current.kind === 'maintenance') {
      return new DomainError('MAINTENANCE_ADMINS_ONLY', 'the allocation is maintenance: only admins may change, confirm or cancel it')
    }
    return undefined
  }
}

/**
 * Whether the booking rules of length, notice, advance and open ends bind `actor`:
 * members yes, admins no (maintenance and operations never need them). Buffers are not
 * asked here: they bind everyone, through the exclusion constraint.
 */
export function bookingRulesBind (actor: Account): boolean {
  return actor.role !== 'admin'
}
