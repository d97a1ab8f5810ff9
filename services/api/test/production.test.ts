import { spawn } from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { buildApp } from '../src/app.js'
import { postmasterPid, POSTGRES_MALLOC_ENV } from '../src/boot/embedded.js'
import { prepareDatabase } from '../src/boot/prepare.js'
import { loadConfig, repoRoot } from '../src/config.js'
import { DEVELOPMENT_ADMIN_TOKEN } from '../src/tokens.js'
import { bearer, freePort, sleep, tempDir, untapped } from './helpers.js'

/**
 * NODE_ENV=production never lets the published development token in, whatever path
 * it takes; and `npm start`, as a new user runs it, stops whole on one signal.
 */

t.test('the first admin never gets the development token in production', async (t) => {
  t.equal(loadConfig({ EMBEDDED_PG_DIR: '/tmp/x' }).bootstrapAdminToken?.token, DEVELOPMENT_ADMIN_TOKEN, 'on a development machine it does')
  t.equal(loadConfig({ EMBEDDED_PG_DIR: '/tmp/x', NODE_ENV: 'production' }).bootstrapAdminToken, undefined, 'in production a token is generated')
  t.throws(() => loadConfig({ NODE_ENV: 'production', BOOTSTRAP_ADMIN_TOKEN: DEVELOPMENT_ADMIN_TOKEN }), /must not be the published development token/)
})

t.test('a database made on a development machine keeps the token, but production refuses it', async (t) => {
  const dir = await tempDir('invsys-production-')
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const env = { LOG_LEVEL: 'silent', EMBEDDED_PG_DIR: path.join(dir, 'data'), EMBEDDED_PG_PORT: String(await freePort()) }
  const database = await prepareDatabase(loadConfig(env), { firstAdmin: true, fast: true })
  t.teardown(() => database.stop())
  t.equal(database.firstAdmin?.token, DEVELOPMENT_ADMIN_TOKEN, 'made with the development token')

  const development = await buildApp({ ...loadConfig(env), databaseUrl: database.url })
  t.teardown(() => development.close())
  t.equal((await development.inject({ url: '/api/me', headers: bearer(DEVELOPMENT_ADMIN_TOKEN) })).statusCode, 200, 'which works there')

  const production = await buildApp({ ...loadConfig({ ...env, NODE_ENV: 'production' }), databaseUrl: database.url })
  t.teardown(() => production.close())
  const refused = await production.inject({ url: '/api/me', headers: bearer(DEVELOPMENT_ADMIN_TOKEN) })
  t.equal(refused.statusCode, 401, 'in production: 401')
  t.match(refused.json(), { code: 'INVALID_TOKEN', message: /development token is refused when NODE_ENV=production/ })
  t.match(refused.headers['www-authenticate'], /error="invalid_token"/)
})

/** Whether a process is still there (a zombie counts as gone). */
async function alive (pid: number): Promise<boolean> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  return stat !== '' && !/^\d+ \(.*\) Z/.test(stat)
}

t.test('npm start in production: a generated admin token, the development token refused, and SIGTERM to npm stops node and PostgreSQL', async (t) => {
  const dir = await tempDir('invsys-npm-start-')
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const dataDir = path.join(dir, 'data')
  const port = await freePort()
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('MALLOC_')))
  const npm = spawn(...untapped('npm', ['start']), {
    cwd: repoRoot,
    env: { ...inherited, NODE_ENV: 'production', PORT: String(port), EMBEDDED_PG_DIR: dataDir, EMBEDDED_PG_PORT: String(await freePort()), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const lines: string[] = []
  const exited = new Promise<number | null>((resolve) => npm.on('exit', (code) => resolve(code)))
  // Should the test fail half way, nothing it started may outlive it.
  const started: Array<{ pid: number, signal: NodeJS.Signals }> = []
  t.teardown(async () => {
    if (npm.exitCode === null) npm.kill('SIGKILL')
    for (const { pid, signal } of started) if (await alive(pid)) process.kill(pid, signal)
  })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready in 100 s:\n${lines.join('\n')}`)), 100_000)
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        lines.push(line)
        if (line.includes('invsys ready')) { clearTimeout(timer); resolve() }
      }
    }
    npm.stdout.on('data', onData)
    npm.stderr.on('data', onData)
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`npm start exited with ${code}:\n${lines.join('\n')}`)) })
  })
  const base = `http://127.0.0.1:${port}`

  const tokenLines = lines.filter((l) => l.includes('"token"'))
  t.equal(tokenLines.length, 1, 'the generated admin token is logged once')
  const token = (JSON.parse(tokenLines[0]!) as { token: string }).token
  t.not(token, DEVELOPMENT_ADMIN_TOKEN)
  t.match(await (await fetch(`${base}/api/me`, { headers: bearer(token) })).json(), { name: 'admin', role: 'admin' }, 'and it is the admin\'s')
  t.equal((await fetch(`${base}/api/me`, { headers: bearer(DEVELOPMENT_ADMIN_TOKEN) })).status, 401, 'the development token is not')
  t.notOk(lines.some((l) => l.includes('created the first account') && l.includes('development token')), 'nor was it given to the admin')

  const serverPid = (JSON.parse(lines.find((l) => l.includes('invsys ready'))!) as { pid: number }).pid
  const postgresPid = await postmasterPid(dataDir)
  started.push({ pid: serverPid, signal: 'SIGKILL' }, ...(postgresPid ? [{ pid: postgresPid, signal: 'SIGINT' as const }] : []))
  t.ok(postgresPid, 'the embedded PostgreSQL runs')
  const environment = (await fs.readFile(`/proc/${postgresPid}/environ`, 'utf8')).split('\0')
  t.same(Object.entries(POSTGRES_MALLOC_ENV).filter(([name, value]) => !environment.includes(`${name}=${value}`)), [],
    'with glibc told to keep freed memory for the next query (POSTGRES_MALLOC_ENV)')
  t.notOk(process.env.MALLOC_MMAP_THRESHOLD_, 'while this process, which started a server in the test before, does not keep them in its own environment')
  t.not(serverPid, npm.pid, 'the server is a process of its own')

  npm.kill('SIGTERM')
  await exited
  for (let waited = 0; waited < 15_000 && (await alive(serverPid) || await alive(postgresPid!)); waited += 100) await sleep(100)
  t.notOk(await alive(serverPid), 'the node server is gone')
  t.notOk(await alive(postgresPid!), 'and so is its PostgreSQL')
  t.ok(lines.some((l) => l.includes('draining requests and closing') && l.includes('SIGTERM')), 'the server heard the signal and drained')
})
