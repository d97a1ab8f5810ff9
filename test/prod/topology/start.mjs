// The topology comes up: PostgreSQL, the dev database's first boot replayed on
// it, two API replicas booting at once on an empty database, then nginx.
import { join } from 'node:path'
import { composeConfig } from '../lib/compose.mjs'
import { knowsUpstreamResolve } from '../lib/nginx.mjs'
import { ROOT } from '../lib/paths.mjs'

export default async function start (t, topo) {
  try {
    await topo.startPostgres()
  } catch (e) {
    topo.fatal = 'PostgreSQL did not start'
    t.fail('PostgreSQL starts', { reason: e.message })
    return
  }
  t.pass(`PostgreSQL runs on 127.0.0.1:${topo.ports.pg}`)

  // The dev db's first boot: the postgres image runs the *.sql files mounted in
  // /docker-entrypoint-initdb.d in name order with psql -v ON_ERROR_STOP=1.
  // Same files, same order, same psql flags, on a database of their own; then
  // the docs' "re-run create_tables.sql" command on the populated database.
  const dev = composeConfig('docker-compose.yml')
  if (dev.config) {
    const initdb = (dev.config.services.db.volumes ?? [])
      .map((v) => String(v).split(':'))
      .filter(([, target]) => target?.startsWith('/docker-entrypoint-initdb.d/') && target.endsWith('.sql'))
      .sort((x, y) => (x[1] < y[1] ? -1 : 1))
    topo.psql(['-d', 'postgres', '-q', '-c', 'CREATE DATABASE devinit'])
    const results = initdb.map(([src, target]) => ({ target, r: topo.psql(['-q', '-d', 'devinit', '-f', src]) }))
    const bad = results.filter((x) => x.r.status !== 0)
    t.ok(initdb.length >= 2 && bad.length === 0,
      `dev db initialisation: ${initdb.map(([, target]) => target.split('/').pop()).join(', ')} run with psql -v ON_ERROR_STOP=1`,
      { errors: bad.map((x) => `${x.target}: ${x.r.stderr}`) })
    const count = topo.psql(['-d', 'devinit', '-tA', '-c', "SELECT (SELECT count(*) FROM site) || ' ' || (SELECT count(*) FROM resource)"])
    t.ok(count.status === 0 && /^[1-9]\d* [1-9]\d*$/.test(count.stdout.trim()), `... and leaves mock data (sites, resources: ${count.stdout.trim()})`,
      { stderr: count.stderr })
    const again = topo.psql(['-q', '-d', 'devinit', '-f', join(ROOT, 'postgres_scripts/create_tables.sql')])
    t.equal(again.status, 0, 'create_tables.sql runs again on a populated database (drops and recreates)', { stderr: again.stderr })
    topo.psql(['-d', 'postgres', '-q', '-c', 'DROP DATABASE devinit'])
  } else {
    t.fail('docker-compose.yml config, for the initialisation files', { reason: dev.error })
  }

  // Together, as two replicas booting at once against an empty database would.
  topo.apiA = topo.startApi('api-a', topo.ports.a)
  topo.apiB = topo.startApi('api-b', topo.ports.b)
  for (const [rec, port] of [[topo.apiA, topo.ports.a], [topo.apiB, topo.ports.b]]) {
    try {
      await topo.waitReady(rec, port)
      t.pass(`${rec.name} (the image's CMD, .env.prod.example's settings) is ready on 127.0.0.1:${port}`)
    } catch (e) {
      topo.fatal = `${rec.name} did not start`
      t.fail(`${rec.name} starts`, { reason: e.message })
      return
    }
  }
  if (topo.image.healthcheck) t.equal(topo.healthcheck(topo.ports.a), 0, "the image's HEALTHCHECK command passes against a ready API")

  topo.writeNginx()
  try {
    await topo.startNginx()
    const { ports } = topo
    t.pass(`nginx (nginx/, HTTPS enabled) proxies on 127.0.0.1: ${ports.nginx} (1337, plain), ${ports.http} (80), ${ports.https} (443)`)
    if (!knowsUpstreamResolve(topo.nginxVersion.version)) {
      t.comment(`${topo.nginxVersion.text} predates "resolve" in upstreams (1.27.3): the local copy lists the replicas without it`)
    }
  } catch (e) {
    topo.fatal = 'nginx did not start'
    t.fail('nginx starts', { reason: e.message })
  }
}
