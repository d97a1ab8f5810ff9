// npm run test:watch [-- <test files>]: the inner loop. Runs the tests once, then again
// each time a source, test or migration is saved: the given files, or else only the test
// files that load what changed (tap --changed). Without coverage, for speed; npm test
// remains the whole check. Ctrl-C stops it.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

const root = path.resolve(import.meta.dirname, '..')
const files = process.argv.slice(2)
const WATCHED = ['services/api/src', 'services/api/test', 'postgres_scripts']

let running
let again = false

function run () {
  if (running) {
    again = true
    return
  }
  const args = ['--disable-coverage', ...(files.length > 0 ? files : ['--changed'])]
  console.log(`\n$ tap ${args.join(' ')}`)
  running = spawn(path.join(root, 'node_modules', '.bin', 'tap'), args, { cwd: root, stdio: 'inherit' })
  running.on('exit', () => {
    running = undefined
    if (again) {
      again = false
      run()
    } else {
      console.log('\nwatching for changes (Ctrl-C to stop)')
    }
  })
}

let timer
for (const dir of WATCHED) {
  fs.watch(path.join(root, dir), { recursive: true }, () => {
    // An editor's save is several events: run once they settle.
    clearTimeout(timer)
    timer = setTimeout(run, 300)
  })
}
run()
