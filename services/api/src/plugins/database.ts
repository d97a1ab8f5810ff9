import type { FastifyInstance } from 'fastify'
import fastifyPostgres from '@fastify/postgres'
import fp from 'fastify-plugin'
import { poolOptions, survivePoolErrors } from '../database/db.js'

/** Decorates the app with `pg` (a pool), closed when the app closes. */
export const database = fp(async function database (app: FastifyInstance) {
  const { databaseUrl, poolMax, poolWaitMs } = app.config
  if (!databaseUrl) throw new Error('databaseUrl must be resolved before the app is built')
  await app.register(fastifyPostgres, poolOptions(databaseUrl, poolMax, poolWaitMs))
  // A lost connection must never crash the process: the request using it answers 503,
  // and the next query connects afresh.
  survivePoolErrors(app.pg.pool, (error, idle) => {
    app.log.warn({ code: (error as { code?: string }).code, message: error.message, idle }, 'database connection lost')
  })
}, { name: 'invsys-database', dependencies: ['invsys-config'] })
