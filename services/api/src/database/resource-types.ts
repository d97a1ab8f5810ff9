import type { Db, Page } from './db.js'
import type { ResourceType } from '../schemas/resources.js'

const ALL = 'SELECT name, plural, category FROM resource_type ORDER BY name'

const PAGE = 'SELECT name, plural, category FROM resource_type ORDER BY name LIMIT $1 OFFSET $2'

/** Every type, for building the per-type route families at boot. */
export async function allResourceTypes (db: Db): Promise<ResourceType[]> {
  return (await db.query<ResourceType>(ALL)).rows
}

export async function listResourceTypes (db: Db, page: Page): Promise<ResourceType[]> {
  return (await db.query<ResourceType>(PAGE, [page.limit + 1, page.offset])).rows
}
