import { Type, type Static } from '@sinclair/typebox'
import { DateTime, Nullable, PageQuery, Text, Uuid } from './common.js'

export const Role = Type.Union([Type.Literal('admin'), Type.Literal('member')], {
  description: 'admin: manages sites, resources, containers and maintenance, and may change any allocation. member: reads everything, books, and changes only its own allocations'
})
export type Role = Static<typeof Role>

/** An account id, described where it is used (an owner, an actor). */
export const accountId = (description?: string) =>
  Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, examples: [2], ...(description ? { description } : {}) })
const AccountId = accountId()

export const Account = Type.Object({
  id: AccountId,
  name: Type.String(),
  role: Role,
  created_at: DateTime
}, { title: 'Account', examples: [{ id: 2, name: 'priya', role: 'member', created_at: '2026-01-05T10:00:00Z' }] })
export type Account = Static<typeof Account>

/** Who is acting: what authorisation and the audit columns need of an account. */
export type Actor = Pick<Account, 'id' | 'role'>

/** The name's characters are the database's rule (account_name_format); it reports them. */
export const AccountInput = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100, description: 'Unique, ignoring case; letters, digits and . _ @ -', examples: ['priya'] }),
  role: Type.Optional(Role)
}, { title: 'AccountInput', additionalProperties: false, description: 'role defaults to member', examples: [{ name: 'priya', role: 'member' }] })
export type AccountInput = Static<typeof AccountInput>

export const AccountParams = Type.Object({ id: AccountId })
export const AccountListQuery = Type.Object({ ...PageQuery }, { additionalProperties: false })

/** A token as listed: never the token, never its hash. */
export const ApiToken = Type.Object({
  id: Uuid,
  account_id: AccountId,
  prefix: Type.String({ description: 'The first characters of the token, to tell tokens apart; not secret', examples: ['invsys_YO7h'] }),
  label: Nullable(Type.String()),
  created_at: DateTime,
  last_used_at: Nullable(DateTime),
  revoked_at: Nullable(DateTime)
}, {
  title: 'ApiToken',
  examples: [{
    id: '9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d',
    account_id: 2,
    prefix: 'invsys_YO7h',
    label: 'laptop',
    created_at: '2026-01-05T10:00:00Z',
    last_used_at: '2026-01-06T08:12:00Z',
    revoked_at: null
  }]
})
export type ApiToken = Static<typeof ApiToken>

/** The reply to creating a token: the only time the token itself is ever shown. */
export const NewApiToken = Type.Object({
  ...ApiToken.properties,
  token: Type.String({ description: 'Send as "Authorization: Bearer <token>". Shown this once: store it now', examples: ['invsys_YO7hOQCdZp1DzUd-i7pXE8ISzibTKLv1F06gTyC4D-M'] })
}, {
  title: 'NewApiToken',
  examples: [{
    id: '9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d',
    account_id: 2,
    prefix: 'invsys_YO7h',
    label: 'laptop',
    created_at: '2026-01-05T10:00:00Z',
    last_used_at: null,
    revoked_at: null,
    token: 'invsys_YO7hOQCdZp1DzUd-i7pXE8ISzibTKLv1F06gTyC4D-M'
  }]
})
export type NewApiToken = Static<typeof NewApiToken>

export const TokenInput = Type.Object({
  label: Type.Optional(Nullable(Text(200)))
}, { title: 'TokenInput', additionalProperties: false, description: 'label is optional: {} is a valid body', examples: [{ label: 'laptop' }] })
export type TokenInput = Static<typeof TokenInput>

export const TokenParams = Type.Object({ id: Uuid })
export const TokenListQuery = Type.Object({ ...PageQuery }, { additionalProperties: false })

/** The caller: its account and the token it used. */
export const Me = Type.Object({
  ...Account.properties,
  token_id: Uuid
}, { title: 'Me', examples: [{ id: 2, name: 'priya', role: 'member', created_at: '2026-01-05T10:00:00Z', token_id: '9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d' }] })
export type Me = Static<typeof Me>
