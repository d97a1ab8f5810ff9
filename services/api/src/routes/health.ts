import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { isPrimary } from '../database/health.js'
import { HttpError } from '../plugins/errors.js'
import { errorResponses } from '../schemas/common.js'

const Status = Type.Object({ status: Type.Literal('ok') }, { examples: [{ status: 'ok' }] })

export const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/health', {
    schema: { tags: ['operations'], summary: 'The process is up (it does not touch the database)', response: { 200: Status } }
  }, async () => ({ status: 'ok' as const }))

  app.get('/ready', {
    schema: { tags: ['operations'], summary: 'The primary database answers and takes writes', response: { 200: Status, ...errorResponses(503) } }
  }, async () => {
    // During a failover DATABASE_URL may still reach the old primary, demoted to a standby.
    if (!await isPrimary(app.pg.pool)) throw new HttpError('DATABASE_UNAVAILABLE', 'the database reached is a standby (read-only): no primary yet')
    return { status: 'ok' as const }
  })
}
