// scripts/backup.sh against a real PostgreSQL holding the schema and the mock
// data: dumps, verification by restoring into a scratch database, retention,
// and its one-line errors.
//
// The server is Debian's PostgreSQL of the same major as Debian's pg_dump
// (package postgresql, installed by install-tools.mjs): pg_dump refuses a server
// newer than itself, and Debian 12's client (15) is older than the topology's
// PostgreSQL (17). In production the backup service runs the db image's own
// pg_dump, so the versions match there too.
import { spawnSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import process from 'node:process'
import t from 'tap'
import { freePort, waitFor } from './lib/http.mjs'
import { ROOT } from './lib/paths.mjs'
import { untapped } from '../../scripts/lib/local.mjs'
import { Processes, sleep, tail } from './lib/procs.mjs'
import { debianPostgres } from './lib/tools.mjs'

const work = mkdtempSync(join(tmpdir(), 'invsys-prodbackup-'))
chmodSync(work, 0o755) // PostgreSQL runs as the postgres user
const procs = new Processes(work, { comment: (m) => t.comment(m) })
t.teardown(() => procs.cleanup([{ names: ['postgres'], signal: 'SIGINT', waitMs: 15_000 }]))

const pgInfo = debianPostgres()
const isRoot = process.getuid?.() === 0
const owner = isRoot ? spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }) : null
const ids = isRoot ? { uid: Number(owner.stdout), gid: Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout) } : {}
const PASSWORD = 'backup-test-pw'
const port = await freePort()
const url = (db = 'invsys', user = 'postgres', pw = PASSWORD) => `postgres://${user}:${pw}@127.0.0.1:${port}/${db}`
const psql = (db, args) => spawnSync('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-d', url(db), ...args], { encoding: 'utf8', timeout: 60_000 })
const backupsDir = join(work, 'backups')
const backup = (env, args = [backupsDir]) => spawnSync('bash', [join(ROOT, 'scripts/backup.sh'), ...args], {
  encoding: 'utf8', timeout: 120_000, env: { PATH: process.env.PATH, ...env },
})
const dumps = () => (existsSync(backupsDir) ? readdirSync(backupsDir).sort() : [])
const scratchLeft = () => psql('postgres', ['-At', '-c', "SELECT datname FROM pg_database WHERE datname LIKE 'invsys_backup_check%'"]).stdout.trim()

let ready = false
await t.test(`PostgreSQL ${pgInfo.major} (Debian) with the schema and the mock data`, async (t) => {
  if (!pgInfo.server) {
    t.fail(`no PostgreSQL server binaries in ${pgInfo.bin} (apt-get install postgresql)`)
    return
  }
  const data = join(work, 'pgdata')
  mkdirSync(data)
  const pwfile = join(work, 'pw')
  writeFileSync(pwfile, `${PASSWORD}\n`)
  if (isRoot) {
    chownSync(data, ids.uid, ids.gid)
    chownSync(pwfile, ids.uid, ids.gid)
  }
  const init = spawnSync(...untapped(join(pgInfo.bin, 'initdb'), ['-D', data, '-U', 'postgres', '--pwfile', pwfile, '--auth=scram-sha-256',
    '-E', 'UTF8', '--locale=C']), { encoding: 'utf8', timeout: 120_000, cwd: work, ...ids })
  if (!t.equal(init.status, 0, 'initdb', { output: `${init.stdout}${init.stderr}`.slice(-2000) })) return
  const pg = procs.start('postgres', join(pgInfo.bin, 'postgres'), ['-D', data, '-p', String(port), '-k', data,
    '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'], { cwd: work, ...ids })
  await waitFor('PostgreSQL', () => {
    if (pg.exited) throw Object.assign(new Error(tail(pg.log)), { fatal: true })
    return psql('postgres', ['-c', 'SELECT 1']).status === 0
  }, 30_000)
  const created = psql('postgres', ['-q', '-c', 'CREATE DATABASE invsys'])
  const schema = psql('invsys', ['-q', '-f', join(ROOT, 'postgres_scripts/create_tables.sql')])
  const mock = psql('invsys', ['-q', '-f', join(ROOT, 'postgres_scripts/mock_data.sql')])
  ready = t.ok(created.status === 0 && schema.status === 0 && mock.status === 0, 'create_tables.sql and mock_data.sql loaded',
    { stderr: `${created.stderr}${schema.stderr}${mock.stderr}`.slice(-2000) })
})

await t.test('scripts/backup.sh', { skip: ready ? false : 'no PostgreSQL to back up' }, async (t) => {
  // Three runs, keeping two: one dump per run, the oldest deleted.
  const runs = []
  for (let i = 0; i < 3; i++) {
    if (i) await sleep(1100) // the file names carry the time to the second
    runs.push(backup({ DATABASE_URL: url(), BACKUP_KEEP: '2' }))
  }
  t.ok(runs.every((r) => r.status === 0), 'three runs with BACKUP_KEEP=2 succeed', { output: runs.map((r) => `${r.stdout}${r.stderr}`) })
  t.match(runs[0].stdout, /verified: restores into a scratch database \(\d+ tables\)/, 'each run says it verified the dump by restoring it',
    { stdout: runs[0].stdout })
  const files = dumps()
  t.ok(files.length === 2 && files.every((f) => /^invsys-\d{8}T\d{6}Z\.dump$/.test(f)), `the newest 2 dumps are kept (${files.join(', ')})`)
  const toc = spawnSync('pg_restore', ['-l', join(backupsDir, files.at(-1))], { encoding: 'utf8' })
  t.ok(toc.status === 0 && /TABLE DATA public site /.test(toc.stdout) && /TABLE DATA public resource /.test(toc.stdout),
    'a kept dump is custom format and holds the data (pg_restore -l: TABLE DATA site, resource)', { stderr: toc.stderr })
  // Restored by hand into a database of its own, as docs/deployment.md says: the data is there.
  psql('postgres', ['-q', '-c', 'CREATE DATABASE restored'])
  const restore = spawnSync('pg_restore', ['--exit-on-error', '--no-owner', '-d', url('restored'), join(backupsDir, files.at(-1))],
    { encoding: 'utf8' })
  const count = (db) => psql(db, ['-At', '-c', 'SELECT (SELECT count(*) FROM site) || \' \' || (SELECT count(*) FROM resource)']).stdout.trim()
  t.ok(restore.status === 0 && count('restored') === count('invsys') && /^[1-9]\d* [1-9]\d*$/.test(count('invsys')),
    `pg_restore of a dump gives the same sites and resources (${count('invsys')})`, { stderr: restore.stderr })
  t.equal(scratchLeft(), '', 'no scratch database is left behind')
  t.ok(!readdirSync(backupsDir).some((f) => f.endsWith('.partial')), 'no partial file is left behind')

  // Errors: one line on stderr, non-zero exit, no new dump.
  const before = dumps().join(',')
  const oneLine = (r, re) => r.status !== 0 && r.stderr.trim().split('\n').length === 1 && re.test(r.stderr)
  const errors = {
    noUrl: backup({}),
    badKeep: backup({ DATABASE_URL: url(), BACKUP_KEEP: '0' }),
    noDir: backup({ DATABASE_URL: url() }, []),
    badUrl: backup({ DATABASE_URL: 'postgres://127.0.0.1' }),
    wrongPassword: backup({ DATABASE_URL: url('invsys', 'postgres', 'wrong') }),
  }
  t.ok(oneLine(errors.noUrl, /^backup: error: DATABASE_URL is not set$/m), 'no DATABASE_URL: one-line error', { stderr: errors.noUrl.stderr })
  t.ok(oneLine(errors.badKeep, /BACKUP_KEEP must be/), 'BACKUP_KEEP=0: one-line error', { stderr: errors.badKeep.stderr })
  t.ok(oneLine(errors.noDir, /no backup directory/), 'no directory: one-line error', { stderr: errors.noDir.stderr })
  t.ok(oneLine(errors.badUrl, /DATABASE_URL must look like/), 'a DATABASE_URL without a database: one-line error', { stderr: errors.badUrl.stderr })
  t.ok(oneLine(errors.wrongPassword, /^backup: error: pg_dump failed: .*password authentication failed/),
    "a wrong password: one-line error with pg_dump's reason", { stderr: errors.wrongPassword.stderr })

  // A role that may read everything but not create databases: the dump is made,
  // the verification cannot run, so the run fails and keeps nothing new.
  psql('postgres', ['-q', '-c', "CREATE ROLE reader LOGIN PASSWORD 'reader-pw'; GRANT pg_read_all_data TO reader"])
  const unverified = backup({ DATABASE_URL: url('invsys', 'reader', 'reader-pw') })
  t.ok(oneLine(unverified, /cannot create the scratch database for the verification: .*permission denied/),
    'a dump that cannot be verified (no CREATEDB) fails, in one line', { stderr: unverified.stderr })
  t.equal(dumps().join(','), before, 'failed runs leave no dump behind and delete none')
  t.equal(scratchLeft(), '', '... and no scratch database')
  t.equal(readFileSync(join(ROOT, 'scripts/backup.sh'), 'utf8').split('\n')[0], '#!/usr/bin/env bash', 'scripts/backup.sh is a bash script')
})
