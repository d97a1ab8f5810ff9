#!/usr/bin/env node
// Runs a compiled entry of the API, `node scripts/run-built.mjs <entry> [args…]` (entry:
// server, cli/token, cli/migrate), compiling first only when a source is newer than what
// was built. `npm start`, `npm run token` and `npm run migrate` use it: a command then
// costs one Node start (about 0.1 s of CPU) instead of tsx compiling TypeScript on every
// run (about 1 s of CPU, 3 to 6 s on a busy machine) or tsc checking the whole project
// (several seconds) before each start.
//
// Plain JavaScript on purpose: it must run before anything is compiled.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const src = path.join(root, 'services', 'api', 'src')
const dist = path.join(root, 'services', 'api', 'dist')
const CONFIGS = ['tsconfig.json', 'tsconfig.build.json'].map((name) => path.join(root, name))

const [entry, ...args] = process.argv.slice(2)
if (!entry) {
  process.stderr.write('usage: node scripts/run-built.mjs <entry under services/api/src, without .ts> [arguments]\n')
  process.exit(2)
}

const mtime = (file) => { try { return fs.statSync(file).mtimeMs } catch { return -1 } }

function * sources (dir) {
  for (const item of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, item.name)
    if (item.isDirectory()) yield * sources(file)
    else if (item.name.endsWith('.ts') && !item.name.endsWith('.d.ts')) yield file
  }
}

/** Why the build is out of date (a compiled file missing, or older than its source or a tsconfig), or undefined. */
function stale () {
  const configs = Math.max(...CONFIGS.map(mtime))
  for (const file of sources(src)) {
    const built = mtime(path.join(dist, path.relative(src, file)).replace(/\.ts$/, '.js'))
    if (built < 0) return 'there is no build yet'
    if (built < mtime(file) || built < configs) return `${path.relative(root, file)} changed since the last build`
  }
  return undefined
}

const changed = stale()
if (changed !== undefined) {
  process.stderr.write(`invsys: compiling the API first (${changed}; a few seconds)\n`)
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const build = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit' })
  if (build.status !== 0) process.exit(build.status ?? 1)
}

const file = path.join(dist, `${entry}.js`)
if (mtime(file) < 0) {
  process.stderr.write(`invsys: no such entry: ${path.relative(root, file)}\n`)
  process.exit(2)
}
// In this process: the entry reads its arguments from process.argv and owns the signals.
process.argv = [process.argv[0], file, ...args]
await import(pathToFileURL(file).href)
