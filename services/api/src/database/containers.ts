import { withTransaction, type Db, type Page } from './db.js'
import type { Container, ContainerPatch } from '../schemas/containers.js'

const COLUMNS = 'id, freezer_id, description, created_at'

const LIST = `
  SELECT ${COLUMNS} FROM container
  WHERE freezer_id = $1
  ORDER BY created_at, id
  LIMIT $2 OFFSET $3`

const GET = `SELECT ${COLUMNS} FROM container WHERE id = $1`

const LOCK = `SELECT ${COLUMNS} FROM container WHERE id = $1 FOR UPDATE`

// The composite foreign key refuses a freezer_id that is not a freezer.
const INSERT = `
  INSERT INTO container (freezer_id, description)
  VALUES ($1, $2)
  RETURNING ${COLUMNS}`

const UPDATE = `
  UPDATE container SET freezer_id = $2, description = $3
  WHERE id = $1
  RETURNING ${COLUMNS}`

const DELETE = 'DELETE FROM container WHERE id = $1'

export async function listContainers (db: Db, freezerId: string, page: Page): Promise<Container[]> {
  return (await db.query<Container>(LIST, [freezerId, page.limit + 1, page.offset])).rows
}

export async function getContainer (db: Db, id: string): Promise<Container | undefined> {
  return (await db.query<Container>(GET, [id])).rows[0]
}

async function lockContainer (db: Db, id: string): Promise<Container | undefined> {
  return (await db.query<Container>(LOCK, [id])).rows[0]
}

export async function createContainer (db: Db, freezerId: string, description: string | null): Promise<Container> {
  return (await db.query<Container>(INSERT, [freezerId, description])).rows[0]!
}

async function updateContainer (db: Db, id: string, freezerId: string, description: string | null): Promise<Container> {
  return (await db.query<Container>(UPDATE, [id, freezerId, description])).rows[0]!
}

export async function deleteContainer (db: Db, id: string): Promise<boolean> {
  return ((await db.query(DELETE, [id])).rowCount ?? 0) > 0
}

/** Merges the given fields onto the stored container under a row lock. Undefined when there is no such container. */
export async function patchContainer (db: Db, id: string, patch: ContainerPatch): Promise<Container | undefined> {
  return withTransaction(db, async (client) => {
    const current = await lockContainer(client, id)
    if (!current) return undefined
    const next = { ...current, ...patch }
    return updateContainer(client, id, next.freezer_id, next.description)
  })
}
