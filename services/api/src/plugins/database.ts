import type { FastifyInstance } from 'fastify'
import fastifyPostgres from '@fastify/postgres'
import fp from 'fastify-plugin'
import { poolOptions } from '../database/db.js'

/** Decorates the app with `pg` (a pool), closed when the app closes. */
export const database = fp(async function database (app: FastifyInstance) {
  const { databaseUrl, poolMax } = app.config
  if (!databaseUrl) throw new Error('databaseUrl must be resolved before the app is built')
  await app.register(fastifyPostgres, poolOptions(databaseUrl, poolMax))
  // An idle client dropped by the server must not crash the process; the next query reconnects.
  app.pg.pool.on('error', (error) => app.log.warn({ err: error }, 'idle database connection lost'))
}, { name: 'invsys-database', dependencies: ['invsys-config'] })
