// tap --before for the prod test (npm run test:prod): installs the Debian tools
// the test files need, once, before they run in parallel.
import console from 'node:console'
import process from 'node:process'
import { installMissing } from './lib/tools.mjs'

try {
  const pkgs = installMissing((m) => console.log(`# ${m}`))
  if (pkgs.length) console.log(`# installed ${pkgs.join(' ')}`)
} catch (e) {
  console.error(`prod test: ${e.message}`)
  process.exit(1)
}
