import type { Db } from './db.js'

export async function ping (db: Db): Promise<void> {
  await db.query('SELECT 1')
}
