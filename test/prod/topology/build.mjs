// The runtime image: services/api/Dockerfile's build replayed (npm ci, npm run
// build, npm prune: the image's own commands), and what the result holds.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export default async function build(t, topo) {
  const started = Date.now();
  let image;
  try {
    image = topo.buildImage();
  } catch (e) {
    topo.fatal = 'the image did not build';
    t.fail('services/api/Dockerfile builds (install, compile, prune replayed)', { reason: e.message });
    return;
  }
  if (image.prebuilt) {
    t.comment(`using INVSYS_PRODTEST_APP_DIR=${image.appDir} instead of replaying the Dockerfile`);
    return;
  }
  t.pass(`services/api/Dockerfile builds (stages ${image.stages.join(', ')} replayed in ${((Date.now() - started) / 1000).toFixed(0)}s)`);
  const nm = join(image.appDir, 'node_modules');
  t.ok(existsSync(join(image.appDir, 'services/api/dist/server.js')) && existsSync(join(image.appDir, 'postgres_scripts/create_tables.sql')),
    'runtime image holds services/api/dist/server.js and postgres_scripts/');
  const devOnly = ['typescript', 'tsx', 'tap'].filter((p) => existsSync(join(nm, p)));
  t.same(devOnly, [], 'runtime image has no dev dependencies (typescript, tsx, tap pruned)');
  t.ok(!existsSync(join(image.appDir, 'services/api/src')) && !existsSync(join(image.appDir, '.env.prod')),
    'runtime image has no TypeScript source and no .env file');
  t.ok(image.user && image.user !== 'root' && image.user !== '0', `runtime image runs as a non-root user (${image.user})`);
  t.ok(Array.isArray(image.healthcheck) && image.healthcheck.join(' ').includes('/ready'), 'runtime image has a HEALTHCHECK on /ready',
    { healthcheck: image.healthcheck });
  t.ok(image.cmd?.[0] === 'node' && /\.js$/.test(image.cmd.at(-1)), `runtime image runs node on JavaScript: ${image.cmd?.join(' ')}`);
}
