import type { Db } from './db.js'
import type { ResourceType } from '../schemas/resources.js'

const LIST = 'SELECT name, plural, category FROM resource_type ORDER BY name'

export async function listResourceTypes (db: Db): Promise<ResourceType[]> {
  return (await db.query<ResourceType>(LIST)).rows
}
