// The production files checked without running them: both compose files
// through docker-compose config (Debian's docker-compose, no Docker engine
// needed), .dockerignore, and nginx -t on nginx/ as it is and on this
// machine's copy. Runs beside topology.test.mjs (npm run test:prod).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { composeConfig } from './lib/compose.mjs';
import { loadDockerignore } from './lib/dockerfile-replay.mjs';
import { NGINX_DIR, nginxTest, nginxVersion, unexpectedChange, writeLocalNginx } from './lib/nginx.mjs';
import { ROOT } from './lib/paths.mjs';
import { nginxBinary } from './lib/tools.mjs';

const work = mkdtempSync(join(tmpdir(), 'invsys-prodstatic-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

t.test('docker-compose.yml (development)', async (t) => {
  const dev = composeConfig('docker-compose.yml');
  if (!t.ok(!dev.error, 'docker-compose -f docker-compose.yml config', { reason: dev.error })) return;
  const s = dev.config.services ?? {};
  const db = s.db ?? {};
  const api = s.api ?? {};
  t.ok(/^postgres:(1[6-9]|[2-9]\d)/.test(db.image ?? '') && !db.ports, 'dev: db is postgres >= 16, not published', { db });
  t.ok(
    (db.volumes ?? []).some((v) => String(v).includes(':/var/postgres_scripts')) &&
      (db.volumes ?? []).some((v) => String(v).includes(':/docker-entrypoint-initdb.d/')) &&
      (db.volumes ?? []).some((v) => /^[\w-]+:\/var\/lib\/postgresql\/data/.test(String(v))),
    'dev: db mounts postgres_scripts at /var/postgres_scripts, initdb scripts, named data volume',
    { volumes: db.volumes },
  );
  t.ok(Boolean(db.healthcheck?.test), 'dev: db has a healthcheck', { healthcheck: db.healthcheck });
  t.ok(
    api.depends_on?.db?.condition === 'service_healthy' &&
      JSON.stringify(api.ports ?? []).includes('3000') &&
      (api.volumes ?? []).some((v) => /:\/app(:rw)?$/.test(String(v))) &&
      JSON.stringify(api.command ?? '').includes('dev'),
    'dev: api mounts the source, runs npm run dev, port 3000, waits for a healthy db',
    { api },
  );
});

t.test('docker-compose.prod.yml', async (t) => {
  const prod = composeConfig('docker-compose.prod.yml');
  if (!t.ok(!prod.error, 'docker-compose -f docker-compose.prod.yml config', { reason: prod.error })) return;
  const s = prod.config.services ?? {};
  t.same(Object.keys(s).sort(), ['api', 'db', 'nginx'], 'prod: services are db, api, nginx');
  t.ok(!s.db?.ports && !s.api?.ports, 'prod: neither db nor api is published to the host', { db: s.db?.ports, api: s.api?.ports });
  t.ok(JSON.stringify(s.nginx?.ports ?? []).match(/"published":"?1337"?|1337:80/) !== null, 'prod: nginx is published on host port 1337',
    { ports: s.nginx?.ports });
  t.ok((s.api?.deploy?.replicas ?? s.api?.scale ?? 1) >= 2, 'prod: api runs at least 2 replicas', { deploy: s.api?.deploy });
  t.ok(Boolean(s.api?.build) && Boolean(s.api?.restart) && s.api?.depends_on?.db?.condition === 'service_healthy',
    'prod: api is built from the Dockerfile, has a restart policy, waits for a healthy db', { api: s.api });
  t.ok(Boolean(s.db?.healthcheck?.test) && (s.db?.volumes ?? []).some((v) => String(v).includes(':/var/lib/postgresql/data')),
    'prod: db has a healthcheck and a data volume', { db: s.db });
  t.ok(s.nginx?.depends_on?.api !== undefined, 'prod: nginx depends on api', { depends_on: s.nginx?.depends_on });
  t.ok(s.db?.environment?.POSTGRES_PASSWORD !== undefined && s.api?.environment?.DATABASE_URL !== undefined,
    'prod: db and api get their settings from .env.prod.db and .env.prod');
});

t.test('.dockerignore', async (t) => {
  const ignored = loadDockerignore(ROOT);
  const leaks = ['.env.prod', '.env.prod.db', '.env.dev', '.env', 'node_modules', '.git'].filter((f) => !ignored(f));
  t.same(leaks, [], '.dockerignore keeps .env files, node_modules and .git out of the build context');
});

t.test('nginx/', async (t) => {
  const { text: versionText } = nginxVersion();
  t.comment(versionText);
  {
    // The files as they are: "api" has to resolve, so nginx -t runs with an
    // /etc/hosts of its own in a private mount namespace (needs root and unshare).
    const hosts = join(work, 'hosts');
    writeFileSync(hosts, '127.0.0.1 localhost\n127.0.0.1 api\n');
    const r = spawnSync('unshare', ['-m', 'sh', '-c', 'mount --bind "$1" /etc/hosts && exec "$2" -t -q -c "$3"', 'sh',
      hosts, nginxBinary(), join(NGINX_DIR, 'nginx.conf')], { encoding: 'utf8', timeout: 30_000 });
    if (r.error || (/unshare failed|mount:|Operation not permitted/.test(r.stderr ?? '') && r.status !== 0)) {
      t.skip(`nginx -t on nginx/ as it is: no private mount namespace here (${r.error?.message ?? r.stderr.trim()})`);
    } else {
      t.equal(r.status, 0, 'nginx -t accepts nginx/nginx.conf as it is (api resolving to 127.0.0.1)', { stderr: r.stderr });
    }
  }
  {
    const dir = join(work, 'nginx');
    const local = writeLocalNginx(dir, {
      ports: { 80: 18080 },
      upstreams: { invsys_api: ['127.0.0.1:18081', '127.0.0.1:18082'] },
    });
    const changed = local.files.map((f) => ({ file: f.rel, change: unexpectedChange(f) })).filter((x) => x.change);
    t.same(changed, [], "the test copy changes only pid, logs, listen and the upstream's servers (found by directive name)");
    const r = nginxTest(local.conf, { prefix: dir });
    t.ok(r.ok, 'nginx -t accepts the test copy (loopback upstreams)', { output: r.output });
  }
});
