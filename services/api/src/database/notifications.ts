import type pg from 'pg'

/** Subscribes `client` (a connection of its own, kept open) to each channel: LISTEN takes no parameters, so the names are quoted. */
export async function listen (client: pg.Client, channels: string[]): Promise<void> {
  for (const channel of channels) await client.query(`LISTEN ${client.escapeIdentifier(channel)}`)
}

/**
 * A round trip on the listening connection. PostgreSQL signals listeners when a change
 * commits and delivers pending notifications before it answers a query, so once this
 * returns, the client has received every notification of changes committed before it
 * was sent.
 */
export async function catchUpWithNotifications (client: pg.ClientBase): Promise<void> {
  await client.query('SELECT 1')
}
