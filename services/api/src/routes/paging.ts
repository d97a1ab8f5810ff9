import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Page } from '../database/db.js'

/**
 * Trims the one extra row the query fetched and, when it was there, links the next
 * page with the same filters (RFC 8288 `Link: <…>; rel="next"`).
 */
export function sendPage<T> (request: FastifyRequest, reply: FastifyReply, rows: T[], page: Page): T[] {
  if (rows.length <= page.limit) return rows
  const url = new URL(request.url, 'http://invsys.invalid')
  url.searchParams.set('limit', String(page.limit))
  url.searchParams.set('offset', String(page.offset + page.limit))
  reply.header('Link', `<${url.pathname}${url.search}>; rel="next"`)
  return rows.slice(0, page.limit)
}
