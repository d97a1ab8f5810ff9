import pg from 'pg'
import { migrate } from '../../src/boot/migrate.js'

/** The schema as the API itself creates it: every migration, on an empty database. */
export async function ensureSchema (url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await migrate(client)
  } finally {
    await client.end()
  }
}
