import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ping } from '../database/health.js'
import { errorResponses } from '../schemas/common.js'

const Status = Type.Object({ status: Type.Literal('ok') }, { examples: [{ status: 'ok' }] })

export const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/health', {
    schema: { tags: ['operations'], summary: 'The process is up (it does not touch the database)', response: { 200: Status } }
  }, async () => ({ status: 'ok' as const }))

  app.get('/ready', {
    schema: { tags: ['operations'], summary: 'The database answers', response: { 200: Status, ...errorResponses(503) } }
  }, async () => {
    await ping(app.pg.pool)
    return { status: 'ok' as const }
  })
}
