import type { Db, Page } from './db.js'
import type { AllocationEvent } from '../schemas/allocations.js'

// id order is the order the changes were made: one allocation's changes are serialised
// by its row lock, and each takes its id while holding it.
const LIST = `
  SELECT id, allocation_id, operation, at, actor_id, db_user, application, old_row AS old, new_row AS new
  FROM allocation_event
  WHERE allocation_id = $1
  ORDER BY id
  LIMIT $2 OFFSET $3`

/** What the allocation_record_event trigger wrote about one allocation, oldest first. */
export async function listAllocationEvents (db: Db, allocationId: string, page: Page): Promise<AllocationEvent[]> {
  return (await db.query<AllocationEvent>(LIST, [allocationId, page.limit + 1, page.offset])).rows
}
